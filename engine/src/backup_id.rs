//! Backup ids: `<module>-<16 uppercase hex digits of epoch ms>-<2 uppercase hex digits>`.
//! They sort by time within a module, and name the module they belong to.

use std::fmt;

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupId {
    pub module: String,
    pub millis: u64,
    pub suffix: u8,
}

impl BackupId {
    /// # Errors
    /// `InvalidBackupId` explaining which part is wrong.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidBackupId {
            id: s.into(),
            why: why.into(),
        };
        let (rest, suffix) = s.rsplit_once('-').ok_or_else(|| bad("no '-' separators"))?;
        let (module, millis) = rest
            .rsplit_once('-')
            .ok_or_else(|| bad("missing the timestamp part"))?;
        let upper_hex = |p: &str, n: usize| {
            p.len() == n
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        };
        if !upper_hex(millis, 16) {
            return Err(bad("the timestamp must be 16 uppercase hex digits"));
        }
        if !upper_hex(suffix, 2) {
            return Err(bad("the suffix must be 2 uppercase hex digits"));
        }
        validate_module_name(module).map_err(|e| match e {
            Error::InvalidInput(why) => bad(&why),
            other => other,
        })?;
        Ok(BackupId {
            module: module.into(),
            millis: u64::from_str_radix(millis, 16).expect("checked hex"),
            suffix: u8::from_str_radix(suffix, 16).expect("checked hex"),
        })
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{:016X}-{:02X}",
            self.module, self.millis, self.suffix
        )
    }
}

/// Prefix of rbk's own entries beside module dirs (restore staging); never a module.
pub const RBK_TEMP_PREFIX: &str = ".rbk-";

/// Module names are any UTF-8 without '/', and also must be usable as one object-key segment.
///
/// # Errors
/// `InvalidInput` naming the module.
pub fn validate_module_name(name: &str) -> Result<()> {
    if name.len() > MAX_MODULE_NAME_LEN {
        return Err(Error::InvalidInput(format!(
            "module name `{name}` is {} bytes; rbk accepts at most {MAX_MODULE_NAME_LEN}, so that every name it derives from it (restore staging dirs add 22 bytes, backup ids 20) fits a file name (255 bytes)",
            name.len()
        )));
    }
    // Reserved for rbk's own entries beside module dirs (restore staging): a module of such
    // a name could be taken for one and removed.
    if name.starts_with(RBK_TEMP_PREFIX) {
        return Err(Error::InvalidInput(format!(
            "`{name}` is not a valid module name: names starting with `{}` are reserved for rbk's own entries",
            RBK_TEMP_PREFIX
        )));
    }
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.chars().any(char::is_control)
    {
        return Err(Error::InvalidInput(format!(
            "`{name}` is not a valid module name (non-empty, no '/', '\\' or control characters)"
        )));
    }
    Ok(())
}

/// The longest module name rbk accepts, in bytes. Names derived from it must fit NAME_MAX
/// (255) on every file system: the longest is a restore's staging dir,
/// `.rbk-restore-<module>-<8 hex>` (+22), then a backup id `<module>-<16 hex>-<2 hex>` (+20,
/// the manifest's object name). 200 leaves room for both with a margin.
pub const MAX_MODULE_NAME_LEN: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_bounded_so_derived_names_fit_name_max() {
        let longest = "m".repeat(MAX_MODULE_NAME_LEN);
        validate_module_name(&longest).unwrap();
        let id = BackupId {
            module: longest.clone(),
            millis: u64::MAX >> 8,
            suffix: 0xff,
        };
        for derived in [
            format!(".rbk-restore-{longest}-{:08x}", u32::MAX),
            format!(".rbk-old-{longest}-{:08x}", u32::MAX),
            id.to_string(),
        ] {
            assert!(derived.len() <= 255, "{} bytes: {derived}", derived.len());
        }
        let e = validate_module_name(&"m".repeat(MAX_MODULE_NAME_LEN + 1)).unwrap_err();
        assert!(
            e.to_string()
                .contains("is 201 bytes; rbk accepts at most 200"),
            "{e}"
        );
    }

    #[test]
    fn parse_display_round_trip() {
        let s = "com.mycompany.My-Module-00000193E038B5F8-DE";
        let id = BackupId::parse(s).unwrap();
        assert_eq!(id.module, "com.mycompany.My-Module");
        assert_eq!(id.millis, 0x193E038B5F8);
        assert_eq!(id.suffix, 0xDE);
        assert_eq!(id.to_string(), s);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "abc",
            "m-123-DE",
            "m-00000193E038B5F8-D",
            "m-00000193e038b5f8-DE",
            "-00000193E038B5F8-DE",
            "a/b-00000193E038B5F8-DE",
        ] {
            let e = BackupId::parse(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidBackupId { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn ids_sort_by_time() {
        let a = BackupId {
            module: "m".into(),
            millis: 5,
            suffix: 0xFF,
        };
        let b = BackupId {
            module: "m".into(),
            millis: 6,
            suffix: 0,
        };
        assert!(a < b && a.to_string() < b.to_string());
    }
}
