//! Key numbering and string interning for the windows: the bytes of a key (or of a text
//! `of` value) become a small number, so that window state lives in flat vectors and
//! tables of numbers, and a row's key is hashed once however many windows read it.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use ahash::RandomState;
use rhai::ImmutableString;

/// A key's bytes as the numbering stores them: up to 23 bytes inline, so that comparing
/// keys reads the table only, not memory elsewhere.
#[derive(Debug, Clone)]
enum KeyBytes {
    Inline(u8, [u8; 23]),
    Heap(Box<[u8]>),
}

impl KeyBytes {
    fn of(bytes: &[u8]) -> KeyBytes {
        if bytes.len() <= 23 {
            let mut inline = [0u8; 23];
            inline[..bytes.len()].copy_from_slice(bytes);
            KeyBytes::Inline(bytes.len() as u8, inline)
        } else {
            KeyBytes::Heap(bytes.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            KeyBytes::Inline(n, bytes) => &bytes[..usize::from(*n)],
            KeyBytes::Heap(bytes) => bytes,
        }
    }
}

// Hashed and compared as the bytes they hold, so that a table of them is searched with a
// plain `&[u8]` (`Borrow`): no key is built for a lookup.
impl Hash for KeyBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for KeyBytes {
    fn eq(&self, other: &KeyBytes) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for KeyBytes {}

impl Borrow<[u8]> for KeyBytes {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Numbers the keys of one key column (their canonical bytes: the text of a string
/// column, the value's bits for a number; see `pipeline::windows`), 0, 1, 2, … in order
/// of first appearance, so results never depend on the hasher.
#[derive(Debug, Default)]
pub struct Keys {
    ids: HashMap<KeyBytes, u32, RandomState>,
}

impl Keys {
    /// The number of the key whose bytes are `key`.
    pub fn id(&mut self, key: &[u8]) -> usize {
        if let Some(&id) = self.ids.get(key) {
            return id as usize;
        }
        let id = u32::try_from(self.ids.len()).expect("fewer than 2^32 keys");
        self.ids.insert(KeyBytes::of(key), id);
        id as usize
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The texts of a string `of` column held by a window's rows, each under a number while
/// some kept row holds it: a text no kept row holds any more is forgotten (its number is
/// given again later), so memory follows the rows inside the span.
#[derive(Debug, Default)]
pub struct Texts {
    ids: HashMap<ImmutableString, u32, RandomState>,
    /// By number: the text (none once forgotten: taking it out allocates nothing) and how
    /// many kept rows hold it.
    texts: Vec<(Option<ImmutableString>, u32)>,
    /// Numbers free to give again.
    free: Vec<u32>,
}

impl Texts {
    /// The number of `text`, held once more.
    pub fn hold(&mut self, text: &str) -> u64 {
        if let Some(&id) = self.ids.get(text) {
            self.texts[id as usize].1 += 1;
            return u64::from(id);
        }
        let text = ImmutableString::from(text);
        let id = match self.free.pop() {
            Some(id) => {
                self.texts[id as usize] = (Some(text.clone()), 1);
                id
            }
            None => {
                self.texts.push((Some(text.clone()), 1));
                u32::try_from(self.texts.len() - 1).expect("fewer than 2^32 texts")
            }
        };
        self.ids.insert(text, id);
        u64::from(id)
    }

    /// Held once less; forgotten when no kept row holds it.
    pub fn release(&mut self, id: u64) {
        let slot = &mut self.texts[id as usize];
        slot.1 -= 1;
        if slot.1 == 0 {
            let text = slot.0.take().expect("a held text");
            self.ids.remove(&text);
            self.free.push(id as u32);
        }
    }

    /// The text numbered `id` (held).
    pub fn text(&self, id: u64) -> &ImmutableString {
        self.texts[id as usize].0.as_ref().expect("a held text")
    }

    /// Texts held now.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_numbered_in_order_of_first_appearance_short_or_long() {
        let mut keys = Keys::default();
        let long = vec![b'x'; 40];
        assert_eq!(keys.id(b"b"), 0);
        assert_eq!(keys.id(&long), 1);
        assert_eq!(keys.id(b"a"), 2);
        assert_eq!(keys.id(b"b"), 0);
        assert_eq!(keys.id(&long), 1);
        assert_eq!(keys.id(&long[..23]), 3);
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn a_text_no_row_holds_is_forgotten_and_its_number_given_again() {
        let mut texts = Texts::default();
        let a = texts.hold("a");
        assert_eq!(texts.hold("a"), a);
        let b = texts.hold("b");
        assert_ne!(a, b);
        texts.release(a);
        assert_eq!(texts.len(), 2);
        texts.release(a);
        assert_eq!(texts.len(), 1);
        let c = texts.hold("c");
        assert_eq!(c, a, "the number is free again");
        assert_eq!(texts.text(c).as_str(), "c");
        assert_eq!(texts.text(b).as_str(), "b");
    }
}
