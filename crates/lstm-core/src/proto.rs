//! Protocol buffers, the encoding of ONNX files and TensorBoard's events: the writer of a
//! message's fields, which is all either needs (varints, 64- and 32-bit numbers,
//! length-delimited bytes and nested messages), field numbers given by the caller.

/// A protocol buffer message being written.
#[derive(Default)]
pub struct Message(pub Vec<u8>);

impl Message {
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    pub fn key(&mut self, field: u64, wire: u64) {
        self.varint(field << 3 | wire);
    }

    pub fn int(&mut self, field: u64, v: u64) -> &mut Self {
        self.key(field, 0);
        self.varint(v);
        self
    }

    pub fn double(&mut self, field: u64, v: f64) -> &mut Self {
        self.key(field, 1);
        self.0.extend(v.to_le_bytes());
        self
    }

    pub fn float(&mut self, field: u64, v: f32) -> &mut Self {
        self.key(field, 5);
        self.0.extend(v.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, field: u64, v: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
}
