//! Key numbering and string interning for the windows: the bytes of a key (or of a text
//! `of` value) become a small number, so that window state lives in flat vectors and
//! tables of numbers, and a row's key is hashed once however many windows read it.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use ahash::RandomState;
use rhai::ImmutableString;

/// The hash of a key's bytes, as `Keys` takes it: computed where the key is read (on the
/// lanes, in parallel), so that the sequential numbering only looks it up. Seeded at random
/// once per process (the lanes and the sequencer share it): keys are numbered in order of
/// first appearance, so results never depend on the seeds, and an input cannot be written
/// whose keys all land in one probe run (every row would then scan the run: with fixed
/// seeds, 20,000 such account names made a run 15 times slower).
pub fn hash(key: &[u8]) -> u64 {
    static SEEDED: OnceLock<RandomState> = OnceLock::new();
    SEEDED.get_or_init(random_seeds).hash_one(key)
}

/// A hasher with seeds from the operating system (std's `RandomState` draws its keys there;
/// ahash's own, built without its `runtime-rng` feature, would not).
pub(crate) fn random_seeds() -> RandomState {
    let os = std::collections::hash_map::RandomState::new();
    let seed = |i: u64| os.hash_one(i);
    RandomState::with_seeds(seed(0), seed(1), seed(2), seed(3))
}

/// Whether `a` and `b` are the same bytes. Keys and texts are mostly short (an account
/// number, a merchant's name): up to 16 bytes they are compared in two overlapping words
/// each, a few instructions where `==` calls the C library's `memcmp` (a third of a
/// lookup).
#[inline]
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4"));
    match n {
        0 => true,
        1..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// Bytes of a key held in its slot; longer keys are kept apart (`Keys::long`).
const INLINE: usize = 22;
/// `Slot::id` of a free slot.
const FREE: u32 = u32::MAX;

/// One slot of the open-addressing table: 32 bytes, two to a cache line, holding the key's
/// bytes when short, so that a lookup reads one line of memory (asked for ahead of time:
/// `Keys::prefetch`) and nothing else.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    /// The hash's low 32 bits.
    hash: u32,
    id: u32,
    /// The key's length when at most `INLINE`, else `u16::MAX` and `bytes` holds the index
    /// of the key in `Keys::long` (little-endian, first 4 bytes).
    len: u16,
    bytes: [u8; INLINE],
}

const EMPTY: Slot = Slot {
    hash: 0,
    id: FREE,
    len: 0,
    bytes: [0; INLINE],
};

/// Numbers the keys of one key column (their canonical bytes: the text of a string
/// column, the value's bits for a number; see `pipeline::windows`), 0, 1, 2, … in order
/// of first appearance, so results never depend on the hasher. An open-addressing table
/// (linear probing, at most three quarters full) of keys hashed by the caller (`hash`).
/// Half full at most doubled the table's memory on inputs of millions of distinct keys
/// (3M keys: 256 MiB of slots, against 132 MiB for main's `HashMap`), for no speed seen:
/// most lookups find their key in the first slot or the next.
#[derive(Debug)]
pub struct Keys {
    slots: Vec<Slot>,
    count: u32,
    /// Keys longer than `INLINE` bytes.
    long: Vec<Box<[u8]>>,
}

impl Default for Keys {
    fn default() -> Keys {
        Keys {
            slots: vec![EMPTY; 64],
            count: 0,
            long: Vec::new(),
        }
    }
}

impl Keys {
    /// The number of the key whose bytes are `key` (and whose hash is `hash(key)`).
    pub fn id(&mut self, key: &[u8], hash: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        loop {
            let slot = &self.slots[at];
            if slot.id == FREE {
                break;
            }
            if slot.hash == hash as u32 && self.holds(slot, key) {
                return slot.id as usize;
            }
            at = (at + 1) & mask;
        }
        let id = self.count;
        assert!(id < FREE - 1, "fewer than 2^32 - 1 keys");
        self.slots[at] = self.slot(key, hash, id);
        self.count += 1;
        if self.count as usize * 4 > self.slots.len() * 3 {
            self.grow();
        }
        id as usize
    }

    /// Asks for the slot where a lookup of `hash` starts to be brought into the cache.
    pub fn prefetch(&self, hash: u64) {
        let at = hash as usize & (self.slots.len() - 1);
        super::prefetch(std::ptr::from_ref(&self.slots[at]).cast());
    }

    fn holds(&self, slot: &Slot, key: &[u8]) -> bool {
        equal(self.bytes_of(slot), key)
    }

    fn bytes_of<'a>(&'a self, slot: &'a Slot) -> &'a [u8] {
        if slot.len == u16::MAX {
            let index = u32::from_le_bytes(slot.bytes[..4].try_into().expect("4 bytes"));
            &self.long[index as usize]
        } else {
            &slot.bytes[..usize::from(slot.len)]
        }
    }

    fn slot(&mut self, key: &[u8], hash: u64, id: u32) -> Slot {
        let mut slot = Slot {
            hash: hash as u32,
            id,
            len: u16::MAX,
            bytes: [0; INLINE],
        };
        if key.len() <= INLINE {
            slot.len = key.len() as u16;
            slot.bytes[..key.len()].copy_from_slice(key);
        } else {
            let index = u32::try_from(self.long.len()).expect("fewer than 2^32 keys");
            slot.bytes[..4].copy_from_slice(&index.to_le_bytes());
            self.long.push(key.into());
        }
        slot
    }

    /// Twice the slots, every key moved to its place in them (its hash's low bits, which
    /// the slot keeps: tables stay far below 2^32 slots).
    fn grow(&mut self) {
        let mut slots = vec![EMPTY; self.slots.len() * 2];
        let mask = slots.len() - 1;
        for slot in self.slots.iter().filter(|s| s.id != FREE) {
            let mut at = slot.hash as usize & mask;
            while slots[at].id != FREE {
                at = (at + 1) & mask;
            }
            slots[at] = *slot;
        }
        self.slots = slots;
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The most slots a lookup may probe: the longest run of taken slots.
    #[cfg(test)]
    fn longest_run(&self) -> usize {
        let (mut longest, mut run) = (0, 0);
        // Twice round: a run may wrap past the end.
        for slot in self.slots.iter().chain(&self.slots) {
            run = if slot.id == FREE { 0 } else { run + 1 };
            longest = longest.max(run);
        }
        longest.min(self.slots.len())
    }
}

/// The texts of a string `of` column held by a window's rows, each under a number while
/// some kept row holds it: a text no kept row holds any more is forgotten (its number is
/// given again later), so memory follows the rows inside the span. Looked up by the hash
/// the lane computed (`hash`): hashing the text again here, one row after another, was a
/// third of a distinct window's push.
#[derive(Debug, Default)]
pub struct Texts {
    /// The numbers of the texts held, under their hashes.
    ids: hashbrown::HashTable<u32>,
    /// By number: the text (none once forgotten: taking it out allocates nothing), how
    /// many kept rows hold it, and its hash.
    texts: Vec<(Option<ImmutableString>, u32, u64)>,
    /// Numbers free to give again.
    free: Vec<u32>,
}

impl Texts {
    /// The number of `text` (whose hash is `hash(text)`), held once more.
    pub fn hold(&mut self, text: &str, hash: u64) -> u64 {
        let texts = &self.texts;
        let same = |&id: &u32| {
            texts[id as usize]
                .0
                .as_ref()
                .is_some_and(|held| equal(held.as_bytes(), text.as_bytes()))
        };
        if let Some(&id) = self.ids.find(hash, same) {
            self.texts[id as usize].1 += 1;
            return u64::from(id);
        }
        let text = Some(ImmutableString::from(text));
        let id = match self.free.pop() {
            Some(id) => {
                self.texts[id as usize] = (text, 1, hash);
                id
            }
            None => {
                self.texts.push((text, 1, hash));
                u32::try_from(self.texts.len() - 1).expect("fewer than 2^32 texts")
            }
        };
        let texts = &self.texts;
        self.ids.insert_unique(hash, id, |&id| texts[id as usize].2);
        u64::from(id)
    }

    /// Held once less; forgotten when no kept row holds it.
    pub fn release(&mut self, id: u64) {
        let slot = &mut self.texts[id as usize];
        slot.1 -= 1;
        if slot.1 == 0 {
            slot.0 = None;
            let id = id as u32;
            if let Ok(entry) = self.ids.find_entry(slot.2, |&held| held == id) {
                entry.remove();
            }
            self.free.push(id);
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

    fn id(keys: &mut Keys, key: &[u8]) -> usize {
        keys.id(key, hash(key))
    }

    #[test]
    fn keys_are_numbered_in_order_of_first_appearance_short_or_long() {
        let mut keys = Keys::default();
        let long = vec![b'x'; 40];
        assert_eq!(id(&mut keys, b"b"), 0);
        assert_eq!(id(&mut keys, &long), 1);
        assert_eq!(id(&mut keys, b"a"), 2);
        assert_eq!(id(&mut keys, b"b"), 0);
        assert_eq!(id(&mut keys, &long), 1);
        assert_eq!(id(&mut keys, &long[..22]), 3);
        assert_eq!(id(&mut keys, &long[..23]), 4);
        assert_eq!(id(&mut keys, b""), 5);
        assert_eq!(keys.len(), 6);
    }

    #[test]
    fn numbers_survive_the_table_growing_and_colliding_hashes() {
        let mut keys = Keys::default();
        let names: Vec<Vec<u8>> = (0..10_000)
            .map(|i| format!("{}{i}", "k".repeat(i % 40)).into_bytes())
            .collect();
        for (i, name) in names.iter().enumerate() {
            assert_eq!(id(&mut keys, name), i);
        }
        for (i, name) in names.iter().enumerate().rev() {
            assert_eq!(id(&mut keys, name), i);
        }
        // Every key under one hash: probing alone tells them apart.
        let mut same = Keys::default();
        for (i, name) in names.iter().take(300).enumerate() {
            assert_eq!(same.id(name, 7), i);
        }
        for (i, name) in names.iter().take(300).enumerate() {
            assert_eq!(same.id(name, 7), i);
        }
        assert_eq!(keys.len(), 10_000);
    }

    /// Account names whose hashes under seeds fixed in the binary share their low bits: an
    /// attacker who knows the seeds writes such an input. With seeds drawn per process the
    /// same keys spread over the table.
    #[test]
    fn keys_chosen_to_collide_under_fixed_seeds_do_not_pile_up() {
        let fixed = RandomState::with_seeds(
            0x243f_6a88_85a3_08d3,
            0x1319_8a2e_0370_7344,
            0xa409_3822_299f_31d0,
            0x082e_fa98_ec4e_6c89,
        );
        // 1,000 keys fill 2,048 slots: keys sharing 11 low bits share one home slot.
        let colliding: Vec<Vec<u8>> = (0u64..)
            .map(|i| format!("ACC{i:09}").into_bytes())
            .filter(|key| fixed.hash_one(key.as_slice()) & 0x7ff == 0)
            .take(1000)
            .collect();
        let mut keys = Keys::default();
        for (i, key) in colliding.iter().enumerate() {
            assert_eq!(id(&mut keys, key), i);
        }
        assert_eq!(keys.slots.len(), 2048);
        let longest = keys.longest_run();
        assert!(longest < 100, "a run of {longest} slots");
    }

    /// Memory: a table grows only past three quarters full (3,000,050 distinct accounts
    /// take 4 Mi slots of 32 bytes, not 8 Mi).
    #[test]
    fn the_table_grows_only_past_three_quarters_full() {
        let mut keys = Keys::default();
        for i in 0..3072u32 {
            id(&mut keys, &i.to_le_bytes());
        }
        assert_eq!(keys.slots.len(), 4096);
        id(&mut keys, b"one more");
        assert_eq!(keys.slots.len(), 8192);
    }

    #[test]
    fn bytes_are_equal_exactly_when_they_are_the_same_at_every_length() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).collect();
            assert!(equal(&a, &a.clone()));
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x80;
                assert!(!equal(&a, &b), "{n} bytes, differing at {at}");
            }
            assert!(!equal(&a, &[a.as_slice(), b"x"].concat()));
        }
    }

    /// Texts whose hashes collide (all one hash, or a few) keep one number each while
    /// held, told apart by their bytes alone (lengths 0 to 40, equal in their first and
    /// last bytes, multi-byte), through many holds and releases that free and reuse
    /// numbers: the same as a map from text to (number, holders).
    #[test]
    fn texts_under_colliding_hashes_keep_one_number_each_while_held() {
        let pool: Vec<String> = (0..60usize)
            .map(|i| {
                let mut s: Vec<char> = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
                    .chars()
                    .take(i % 41)
                    .collect();
                if !s.is_empty() {
                    let at = i % s.len();
                    s[at] = 'é';
                }
                s.into_iter().collect()
            })
            .collect();
        let hashes: [fn(&str) -> u64; 3] = [|_| 7, |t| t.len() as u64 % 3, |t| hash(t.as_bytes())];
        for hash_of in hashes {
            let mut x = 12_345u64;
            let mut next = |n: usize| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (x >> 33) as usize % n
            };
            let mut texts = Texts::default();
            let mut held: Vec<(u64, &str)> = Vec::new();
            let mut model: std::collections::HashMap<&str, (u64, u32)> = Default::default();
            for _ in 0..20_000 {
                if held.is_empty() || next(3) != 0 {
                    let text = pool[next(pool.len())].as_str();
                    let id = texts.hold(text, hash_of(text));
                    let (number, holders) = model.entry(text).or_insert((id, 0));
                    assert_eq!(*number, id, "{text:?}");
                    *holders += 1;
                    held.push((id, text));
                } else {
                    let (id, text) = held.swap_remove(next(held.len()));
                    assert_eq!(texts.text(id).as_str(), text);
                    texts.release(id);
                    let holders = &mut model.get_mut(text).expect("held").1;
                    *holders -= 1;
                    if *holders == 0 {
                        model.remove(text);
                    }
                }
                assert_eq!(texts.len(), model.len());
                let numbers: std::collections::HashSet<u64> =
                    model.values().map(|&(n, _)| n).collect();
                assert_eq!(numbers.len(), model.len(), "one number per held text");
            }
        }
    }

    #[test]
    fn a_text_no_row_holds_is_forgotten_and_its_number_given_again() {
        let mut texts = Texts::default();
        let hold = |texts: &mut Texts, text: &str| texts.hold(text, hash(text.as_bytes()));
        let a = hold(&mut texts, "a");
        assert_eq!(hold(&mut texts, "a"), a);
        let b = hold(&mut texts, "b");
        assert_ne!(a, b);
        texts.release(a);
        assert_eq!(texts.len(), 2);
        texts.release(a);
        assert_eq!(texts.len(), 1);
        let c = hold(&mut texts, "c");
        assert_eq!(c, a, "the number is free again");
        assert_eq!(texts.text(c).as_str(), "c");
        assert_eq!(texts.text(b).as_str(), "b");
    }
}
