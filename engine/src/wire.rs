//! Little-endian primitives for the manifest encoding, with a decoder that checks every
//! length against the bytes that remain before allocating.

use rbk_chunkstore::ChunkId;

#[derive(Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(u32::try_from(v.len()).expect("field shorter than 4 GiB"));
        self.0.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub fn id(&mut self, v: &ChunkId) {
        self.0.extend_from_slice(&v.0);
    }
    pub fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("fewer than 2^32 items"));
    }
}

pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

pub type DecResult<T> = std::result::Result<T, String>;

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> DecResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: need {n} bytes at offset {}, {} remain",
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> DecResult<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> DecResult<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub fn u64(&mut self) -> DecResult<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub fn i64(&mut self) -> DecResult<i64> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub fn bytes(&mut self) -> DecResult<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn str(&mut self) -> DecResult<String> {
        let at = self.pos;
        std::str::from_utf8(self.bytes()?)
            .map(str::to_string)
            .map_err(|_| format!("string at offset {at} is not UTF-8"))
    }
    pub fn id(&mut self) -> DecResult<ChunkId> {
        Ok(ChunkId(self.take(32)?.try_into().expect("32 bytes")))
    }
    /// An item count, checked so that `count × min_item_len` bytes can still follow: a forged
    /// count cannot make the decoder allocate more than the input justifies.
    pub fn count(&mut self, min_item_len: usize) -> DecResult<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item_len.max(1)) > self.remaining() {
            return Err(format!(
                "count {n} at offset {} exceeds the remaining {} bytes",
                self.pos - 4,
                self.remaining()
            ));
        }
        Ok(n)
    }
}
