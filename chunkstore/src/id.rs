//! Chunk ids: BLAKE3-256 of the uncompressed chunk bytes.

use std::fmt;

use crate::{Error, Result};

/// The BLAKE3-256 hash of a chunk's uncompressed bytes. Also used for pack ids (hash of the
/// whole pack object).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub const LEN: usize = 32;

    pub fn of(data: &[u8]) -> Self {
        ChunkId(*blake3::hash(data).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// # Errors
    /// `InvalidInput` unless `s` is exactly 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::InvalidInput(format!("`{s}` is not a 64-digit hex id")))?;
        Ok(ChunkId(out))
    }

    /// # Errors
    /// `Corrupt` when `b` is not 32 bytes long.
    pub fn from_slice(b: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = b
            .try_into()
            .map_err(|_| Error::corrupt("chunk id", format!("{} bytes, expected 32", b.len())))?;
        Ok(ChunkId(arr))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_bad_input() {
        let id = ChunkId::of(b"hello");
        assert_eq!(ChunkId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(
            id.to_hex(),
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
        assert_eq!(
            ChunkId::from_hex("zz").unwrap_err().kind(),
            crate::ErrorKind::InvalidInput
        );
    }
}
