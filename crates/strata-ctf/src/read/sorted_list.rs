//! The merge's order of a few streams (one per CPU on most machines): every
//! stream's next key, sorted, the winner first. After the winner's run, its
//! new key moves back to its place and the entries it passes move up one.
//!
//! Where the new key lands depends on the data, and is about as likely to
//! be the second place as any later one: a loop that stops at the place
//! mispredicts most of the time. With AVX2, every entry is compared with
//! the new one at once and the list is rebuilt by selecting, for each
//! place, its old entry, the one after it or the new one: no branch.
//!
//! An entry is one `i64`, the key's offset from a base with the stream's
//! index in its low bits, so that a vector compares four at a time and one
//! comparison orders by key, then stream.

/// Most streams a list orders.
pub(super) const MAX_STREAMS: usize = 16;

/// Bits of an entry that hold the stream index.
const STREAM_BITS: u32 = MAX_STREAMS.trailing_zeros();

/// Entries: the streams, then a block of padding that the vector path
/// reads past the last stream.
const SLOTS: usize = MAX_STREAMS + 4;

/// The entry of a stream with no event left, and of padding: above every
/// other entry.
const EMPTY: i64 = i64::MAX;

/// Largest offset of a key from the base that an entry holds: below
/// `EMPTY` with any stream index (2^59 ns is 18 years).
const MAX_OFFSET: u64 = (1 << (63 - STREAM_BITS)) - 2;

/// How far below the first keys the base is put: streams whose events go
/// back in time a little (packets that overlap) stay in range.
const BASE_MARGIN: u64 = 1 << 40;

/// The key of a stream with no event left, in the merge's terms.
const DONE: u64 = u64::MAX;

/// The sorted entries and the base their keys count from.
#[repr(C, align(32))]
pub(super) struct SortedList {
    slots: [i64; SLOTS],
    base: u64,
    /// More than 8 streams: the vector path goes through all 16 places.
    wide: bool,
    /// The CPU has AVX2: [`SortedList::reinsert_fast`] takes the vector
    /// path.
    vector: bool,
}

/// What a reinsertion decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outcome {
    /// The stream now first.
    pub(super) winner: u32,
    /// Its key (`DONE` when no stream has an event left).
    pub(super) winner_key: u64,
    /// The smallest key of the other streams.
    pub(super) bound: u64,
}

impl SortedList {
    /// The list of streams whose first keys are `keys` (`DONE` for a
    /// stream with no event); `None` for more than `MAX_STREAMS` streams
    /// or keys too far apart for an entry.
    pub(super) fn new(keys: &[u64]) -> Option<Box<Self>> {
        if keys.is_empty() || keys.len() > MAX_STREAMS {
            return None;
        }
        let low = keys.iter().copied().min().unwrap_or(DONE);
        let mut list = Box::new(SortedList {
            slots: [EMPTY; SLOTS],
            base: low.saturating_sub(BASE_MARGIN),
            wide: keys.len() > 8,
            vector: has_avx2(),
        });
        for (i, &k) in keys.iter().enumerate() {
            list.slots[i] = list.entry(k, i as u32)?;
        }
        list.slots[..keys.len()].sort_unstable();
        Some(list)
    }

    /// The entry of stream `stream` at key `k`, if in range.
    #[inline(always)]
    fn entry(&self, k: u64, stream: u32) -> Option<i64> {
        if k == DONE {
            return Some(EMPTY);
        }
        let offset = k.wrapping_sub(self.base);
        // (Below the base, the offset wraps to a huge number.)
        if offset > MAX_OFFSET {
            return None;
        }
        Some((offset << STREAM_BITS | stream as u64) as i64)
    }

    /// The key of entry `e`.
    #[inline(always)]
    fn key(&self, e: i64) -> u64 {
        if e == EMPTY {
            DONE
        } else {
            self.base + (e >> STREAM_BITS) as u64
        }
    }

    /// The outcome of replacing the first entry by `c`, from the entries
    /// before the move: known without waiting for the move's stores.
    #[inline(always)]
    fn outcome(&self, c: i64) -> Outcome {
        let (first, second) = (self.slots[1], self.slots[2]);
        // `c` below the first entry: a tie the stream index breaks, and
        // the stream stays first.
        let (w, b) = if first < c {
            (first, second.min(c))
        } else {
            (c, first)
        };
        Outcome {
            winner: stream_of(w),
            winner_key: self.key(w),
            bound: self.key(b),
        }
    }

    /// The first stream, its key and the smallest key of the others.
    pub(super) fn first(&self) -> Outcome {
        Outcome {
            winner: stream_of(self.slots[0]),
            winner_key: self.key(self.slots[0]),
            bound: self.key(self.slots[1]),
        }
    }

    /// The winner, stream `stream` (first in the list), takes key `k` and
    /// moves back to its place. `None`, the list unchanged, when `k` is out
    /// of the list's range.
    #[inline(always)]
    pub(super) fn reinsert(&mut self, stream: u32, k: u64) -> Option<Outcome> {
        let c = self.entry(k, stream)?;
        let out = self.outcome(c);
        // The padding, above any entry, stops the move at the latest.
        let mut j = 0;
        while self.slots[j + 1] < c {
            self.slots[j] = self.slots[j + 1];
            j += 1;
        }
        self.slots[j] = c;
        Some(out)
    }

    /// [`SortedList::reinsert`], by the vector path where the CPU has it;
    /// the winner and the bound.
    ///
    /// Both come from the entries before the move, here, inline: the
    /// merge goes on to the winner's stream at once, while the called
    /// vector move (whose result nothing waits for) runs beside it.
    #[inline(always)]
    pub(super) fn reinsert_fast(&mut self, stream: u32, k: u64) -> Option<(u32, u64)> {
        #[cfg(target_arch = "x86_64")]
        if self.vector {
            let c = self.entry(k, stream)?;
            let out = self.outcome(c);
            // SAFETY: `vector` is only set where the CPU has AVX2.
            unsafe { self.move_in_avx2(c) };
            return Some((out.winner, out.bound));
        }
        self.reinsert(stream, k).map(|o| (o.winner, o.bound))
    }

    /// Puts entry `c` in place of the first one and moves it back to its
    /// place, without a branch on where that is. Called, not inlined (the
    /// merge loop is not compiled for AVX2).
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn move_in_avx2(&mut self, c: i64) {
        use std::arch::x86_64::*;
        let new = _mm256_set1_epi64x(c);
        // Place 0, the old winner's, takes the new entry unless the entry
        // after it moves up.
        let head = _mm256_set_epi64x(0, 0, 0, -1);
        let p = self.slots.as_mut_ptr().cast::<__m256i>();
        // SAFETY: `slots` is aligned to 32 bytes and holds 5 blocks of 4
        // entries; a narrow list only reads and writes the first 3 (its
        // places 8 and above are padding, which the move leaves as is).
        unsafe {
            let b0 = _mm256_load_si256(p);
            let b1 = _mm256_load_si256(p.add(1));
            let b2 = _mm256_load_si256(p.add(2));
            _mm256_store_si256(p, place(b0, b1, new, head));
            _mm256_store_si256(p.add(1), place(b1, b2, new, _mm256_setzero_si256()));
            if self.wide {
                let b3 = _mm256_load_si256(p.add(3));
                let b4 = _mm256_load_si256(p.add(4));
                _mm256_store_si256(p.add(2), place(b2, b3, new, _mm256_setzero_si256()));
                _mm256_store_si256(p.add(3), place(b3, b4, new, _mm256_setzero_si256()));
            }
        }
    }

    /// The streams with an event, and their keys, other than the first
    /// entry's (the winner's, about to change).
    pub(super) fn others(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.slots[1..MAX_STREAMS + 1]
            .iter()
            .filter(|&&e| e != EMPTY)
            .map(|&e| (stream_of(e), self.key(e)))
    }
}

/// The stream of entry `e`.
fn stream_of(e: i64) -> u32 {
    (e & (MAX_STREAMS as i64 - 1)) as u32
}

/// Whether the CPU has AVX2, for the vector path.
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A block of four places after the move: `block` holds their entries
/// before it and `next` the following four's. Each place takes the entry
/// after it if that is below the new entry `new` (it moves up), else the
/// new entry if its own is below it or `head` marks it (the place freed),
/// else keeps its own.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn place(
    block: std::arch::x86_64::__m256i,
    next: std::arch::x86_64::__m256i,
    new: std::arch::x86_64::__m256i,
    head: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // The entries one place further: `block`'s last three, `next`'s first.
    let across = _mm256_permute2x128_si256::<0x21>(block, next);
    let after = _mm256_alignr_epi8::<8>(across, block);
    let own_below = _mm256_or_si256(_mm256_cmpgt_epi64(new, block), head);
    let after_below = _mm256_cmpgt_epi64(new, after);
    let kept = _mm256_blendv_epi8(block, new, own_below);
    _mm256_blendv_epi8(kept, after, after_below)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The list's streams in order, with their keys.
    fn order(l: &SortedList) -> Vec<(u32, u64)> {
        l.slots[..MAX_STREAMS]
            .iter()
            .filter(|&&e| e != EMPTY)
            .map(|&e| (stream_of(e), l.key(e)))
            .collect()
    }

    proptest! {
        /// Both paths keep the entries sorted by key then stream, agree
        /// with each other and with a sort, and report the new first and
        /// the smallest other key.
        #[test]
        fn reinsertion_keeps_the_order_a_sort_gives(
            firsts in prop::collection::vec(prop_oneof![Just(DONE), 1u64 << 62..(1u64 << 62) + 40], 1..=MAX_STREAMS),
            steps in prop::collection::vec(prop_oneof![Just(None), (-20i64..50).prop_map(Some)], 1..60),
        ) {
            let mut scalar = SortedList::new(&firsts).unwrap();
            let mut vector = SortedList::new(&firsts).unwrap();
            let mut keys = firsts.clone();
            for step in steps {
                let (w, wk) = order(&scalar).first().copied().unwrap_or((0, DONE));
                if wk == DONE {
                    break;
                }
                // Keys mostly go up, as a stream's do.
                let k = step.map_or(DONE, |d| wk.wrapping_add_signed(d));
                keys[w as usize] = k;
                let out = scalar.reinsert(w, k).unwrap();
                // (The vector path where the CPU has AVX2.)
                let v = vector.reinsert_fast(w, k);
                prop_assert_eq!(v, Some((out.winner, out.bound)));
                prop_assert_eq!(vector.slots, scalar.slots);
                let mut want: Vec<(u64, u32)> = keys
                    .iter()
                    .enumerate()
                    .filter(|(_, &k)| k != DONE)
                    .map(|(i, &k)| (k, i as u32))
                    .collect();
                want.sort_unstable();
                let got: Vec<(u64, u32)> = order(&scalar).iter().map(|&(s, k)| (k, s)).collect();
                prop_assert_eq!(&got, &want);
                let first = want.first().copied().unwrap_or((DONE, out.winner));
                prop_assert_eq!((out.winner_key, out.winner), first);
                prop_assert_eq!(out.bound, want.get(1).map_or(DONE, |x| x.0));
            }
        }
    }

    #[test]
    fn keys_out_of_range_are_refused_and_leave_the_list_as_it_was() {
        let first = 1u64 << 62;
        assert!(SortedList::new(&[first; MAX_STREAMS + 1]).is_none());
        assert!(SortedList::new(&[first, first + MAX_OFFSET + BASE_MARGIN]).is_none());
        let mut l = SortedList::new(&[first, first + 5]).unwrap();
        let before = l.slots;
        // Far below the base, and far above it.
        assert_eq!(l.reinsert(0, first - BASE_MARGIN - 1), None);
        assert_eq!(l.reinsert(0, first + MAX_OFFSET), None);
        assert_eq!(l.slots, before);
        assert_eq!(order(&l), vec![(0, first), (1, first + 5)]);
        // A little below the first keys is in range.
        let out = l.reinsert(0, first - 10).unwrap();
        assert_eq!((out.winner, out.bound), (0, first + 5));
    }
}
