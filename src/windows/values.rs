//! Window values as the windows stage's sequential part writes them: a kind byte and 8
//! bytes per value, in two vectors, turned into Rhai values later, on a lane. Written as
//! one 16-byte enum, each value was put together on the stack and copied out, a wide load
//! that waited for its narrow stores, which waited behind the windows' cache misses: about
//! a third of a push. Two plain stores do not wait.

use rhai::{Dynamic, ImmutableString};

use super::Val;

const UNIT: u8 = 0;
const INT: u8 = 1;
const FLOAT: u8 = 2;
const BOOL: u8 = 3;
/// `bits` is an index into `texts`.
const TEXT: u8 = 4;

#[derive(Debug, Default)]
pub struct Values {
    kinds: Vec<u8>,
    bits: Vec<u64>,
    texts: Vec<ImmutableString>,
}

impl Values {
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    pub fn clear(&mut self) {
        self.kinds.clear();
        self.bits.clear();
        self.texts.clear();
    }

    pub fn reserve(&mut self, more: usize) {
        self.kinds.reserve(more);
        self.bits.reserve(more);
    }

    #[inline]
    fn push(&mut self, kind: u8, bits: u64) {
        self.kinds.push(kind);
        self.bits.push(bits);
    }

    #[inline]
    pub fn int(&mut self, i: i64) {
        self.push(INT, i as u64);
    }

    #[inline]
    pub fn float(&mut self, f: f64) {
        self.push(FLOAT, f.to_bits());
    }

    #[inline]
    pub fn unit(&mut self) {
        self.push(UNIT, 0);
    }

    pub fn val(&mut self, v: Val) {
        match v {
            Val::Unit => self.unit(),
            Val::Int(i) => self.int(i),
            Val::Float(f) => self.float(f),
            Val::Bool(b) => self.push(BOOL, u64::from(b)),
            Val::Str(s) => {
                self.push(TEXT, self.texts.len() as u64);
                self.texts.push(s);
            }
        }
    }

    /// Value `i` as Rhai sees it.
    pub fn dynamic(&self, i: usize) -> Dynamic {
        let bits = self.bits[i];
        match self.kinds[i] {
            INT => Dynamic::from_int(bits as i64),
            FLOAT => Dynamic::from_float(f64::from_bits(bits)),
            BOOL => Dynamic::from_bool(bits != 0),
            TEXT => Dynamic::from(self.texts[bits as usize].clone()),
            _ => Dynamic::UNIT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_comes_back_as_it_went_in() {
        let mut values = Values::default();
        values.int(-7);
        values.float(-0.0);
        values.unit();
        values.val(Val::Bool(true));
        values.val(Val::Str("b".into()));
        values.val(Val::Float(f64::NAN));
        values.val(Val::Str("a".into()));
        let shown: Vec<String> = (0..values.len())
            .map(|i| format!("{:?}", values.dynamic(i)))
            .collect();
        assert_eq!(shown, ["-7", "-0.0", "()", "true", "\"b\"", "NaN", "\"a\""]);
        assert!(values.dynamic(1).as_float().unwrap().is_sign_negative());
        values.clear();
        assert!(values.is_empty());
    }
}
