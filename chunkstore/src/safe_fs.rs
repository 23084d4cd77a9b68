//! Opening files that someone else can change: a data dir's module state, a local store's
//! objects, config files. Whoever can write those can swap a file for a symlink to a file
//! only root may read, or for a FIFO that never delivers a byte; neither may make rbk store
//! the wrong bytes or hang.
//!
//! Every read therefore opens without following a symlink at the last component
//! (`O_NOFOLLOW`), without blocking on a FIFO or device (`O_NONBLOCK`), and checks the type
//! of what it opened (`fstat` on the descriptor, not the path, so no swap between check and
//! use can get past it).

use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::OFlags;
use rustix::io::Errno;

/// What a file type is called in messages.
pub fn type_name(t: FileType) -> &'static str {
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symbolic link"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

/// Opens `path` read-only if it is a regular file, with its metadata from the descriptor.
///
/// # Errors
/// `InvalidInput` for a symbolic link (at the last component), a FIFO, socket, device or
/// directory; otherwise what `open`/`fstat` return (`NotFound` for a missing file).
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let flags = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a symbolic link; rbk reads only regular files here and never follows links",
            ));
        }
        Err(e) => return Err(e),
    };
    let md = file.metadata()?;
    if !md.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is a {}, not a regular file", type_name(md.file_type())),
        ));
    }
    Ok((file, md))
}

/// Reads a regular file of at most `limit` bytes whole.
///
/// # Errors
/// As [`open_regular`]; `InvalidData` when the file is (or grows while read) larger than
/// `limit`.
pub fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let (file, md) = open_regular(path)?;
    let too_big = |len: u64| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is {len} bytes, more than the {limit} bytes such a file may have"),
        )
    };
    if md.len() > limit {
        return Err(too_big(md.len()));
    }
    let mut buf = Vec::with_capacity(md.len() as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(too_big(buf.len() as u64));
    }
    Ok(buf)
}

/// `create_dir_all` with mode 0700 for every directory it creates: a local store's
/// directories, its temporary and spool files among them, are nobody else's to read.
pub fn create_private_dirs(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_links_fifos_devices_and_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"hello").unwrap();
        assert_eq!(read_limited(&file, 5).unwrap(), b"hello");
        let e = read_limited(&file, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("is 5 bytes, more than the 4 bytes"));

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let e = open_regular(&link).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("symbolic link"), "{e}");

        // A FIFO with no writer would block a plain open forever.
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        let e = read_limited(&fifo, 100).unwrap_err();
        assert!(
            e.to_string().contains("is a FIFO, not a regular file"),
            "{e}"
        );

        let e = open_regular(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let e = open_regular(dir.path()).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        assert_eq!(
            open_regular(&dir.path().join("missing"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }
}
