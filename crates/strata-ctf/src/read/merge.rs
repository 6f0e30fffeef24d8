//! The time-ordered merge of every stream of every trace of a set.

use std::ops::ControlFlow;

use super::cursor::{Cursor, NOT_FAST};
use super::error::{ReadError, SkipStats};
use super::event::Event;
use super::sorted_list::{Outcome, SortedList};

/// All events of a [`super::TraceSet`] in time order: a lending iterator.
///
/// Events are ordered by Unix-nanosecond timestamp; ties go to the earlier
/// trace, then the earlier stream. Within a stream, events keep their file
/// order even where packet bounds overlap. A stream that fails (without
/// `skip_corrupt`) yields its error once and is dropped; the other streams
/// go on.
pub struct Events<'s> {
    cursors: Vec<Cursor<'s>>,
    /// A tournament tree over the streams (a loser tree). Leaf `i` is
    /// stream `i`; leaves are padded up to a power of two with `DONE`
    /// keys. Internal node `n` (1-based, children `2n` and `2n + 1`) holds
    /// the (key, stream) that lost the match there; pairs compare key
    /// first, so equal keys go to the lower stream index. Replacing the
    /// winner's key costs one comparison per level, without the data
    /// movement of a binary heap's sift.
    nodes: Vec<(u64, u32)>,
    /// With at most `sorted_list::MAX_STREAMS` streams (one per CPU on
    /// most machines), the tree is replaced by every stream's next key,
    /// sorted: the first is the winner, the second holds the bound. For a
    /// few streams that costs fewer instructions than replaying the tree's
    /// matches and finding the bound again. `None` with more streams, or
    /// once a key falls out of the list's range (the tree takes over).
    order: Option<Box<SortedList>>,
    /// The overall winner: the current stream and its key.
    winner: (u64, u32),
    /// The smallest key of the streams other than the winner: while the
    /// current stream stays below it, the tree needs no update.
    bound: u64,
    /// The stream whose event was handed out last (it advances on the
    /// next call), or `IDLE`.
    current: u32,
    /// First keys of the streams, gathered before the tree is built.
    first: Vec<u64>,
    primed: usize,
    built: bool,
}

/// No event handed out waits to be advanced past.
const IDLE: u32 = u32::MAX;

/// The key of a stream that has no event left (and of padding leaves).
const DONE: u64 = u64::MAX;

/// A stream's key: its current timestamp, as an unsigned number that sorts
/// the same way. Below `DONE`: cursors keep timestamps below `i64::MAX`.
#[inline(always)]
fn key(c: &Cursor<'_>) -> u64 {
    c.key()
}

/// Hands a stream's error to `try_for_each`'s `f`: out of line, so that
/// `f` has one call site in the hot loop, where it is inlined.
#[cold]
#[inline(never)]
fn hand_error<B, F>(f: &mut F, e: ReadError) -> ControlFlow<B>
where
    F: FnMut(Result<Event<'_>, ReadError>) -> ControlFlow<B>,
{
    f(Err(e))
}

impl<'s> Events<'s> {
    pub(crate) fn new(cursors: Vec<Cursor<'s>>) -> Self {
        let leaves = cursors.len().next_power_of_two().max(1);
        Events {
            cursors,
            nodes: vec![(DONE, 0); leaves],
            order: None,
            winner: (DONE, 0),
            bound: DONE,
            current: IDLE,
            first: vec![DONE; leaves],
            primed: 0,
            built: false,
        }
    }

    /// The next event in time order, `None` when every stream is done.
    ///
    /// Inlined into the caller's loop: as a call, saving and restoring the
    /// registers the decoder needs and returning the `Option<Result>`
    /// through memory cost about 30 instructions per event, an eighth of
    /// the whole.
    #[allow(clippy::should_implement_trait)]
    #[inline(always)]
    pub fn next(&mut self) -> Option<Result<Event<'_>, ReadError>> {
        let ci = self.current;
        if let Some(c) = self.cursors.get_mut(ci as usize) {
            let mut k = c.decode_fast();
            // The common case first: the stream stays the winner (on a tie
            // the tree decides by stream index). `NOT_FAST` is never below
            // the bound.
            if k < self.bound {
                let c: *const Cursor<'s> = c;
                // SAFETY: `c` is the cursor `get_mut` just returned, in
                // bounds of `self.cursors`, whose buffer nothing changes
                // before the event is dropped: the event borrows `self`
                // (shared, for the lifetime of the `&mut self` of this
                // call), and the mutable borrow `c` came from is not used
                // again. This is `&self.cursors[ci]`, the same cursor, but
                // addressed from the register already holding it: through
                // the vector, the compiler reloads its pointer and checks
                // the index again (the cursor's stores may, as far as it
                // knows, have changed them), about 5 instructions per
                // event.
                return Some(Ok(Event { c: unsafe { &*c } }));
            }
            if k == NOT_FAST {
                match c.advance_slow() {
                    Ok(true) => k = key(c),
                    Ok(false) => {
                        self.replay(ci, DONE);
                        if self.winner.0 == DONE {
                            self.current = IDLE;
                            return None;
                        }
                        self.current = self.winner.1;
                        return self.current_event();
                    }
                    Err(e) => {
                        // The stream is dropped; the next call hands out
                        // the winner's event as it stands.
                        self.replay(ci, DONE);
                        self.current = IDLE;
                        return Some(Err(e));
                    }
                }
                if k < self.bound {
                    return self.current_event();
                }
            }
            self.reorder(ci, k);
        } else {
            match self.settle() {
                Ok(true) => self.current = self.winner.1,
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
        self.current_event()
    }

    /// Hands every event left, in time order, to `f`, until `f` returns
    /// `Break` (returned as is) or every stream is done (`Continue`).
    ///
    /// The same items in the same order as calling [`Events::next`] until
    /// it returns `None`: events, and each failed stream's error, after
    /// which the other streams go on (`f` decides whether to stop). After
    /// a `Break`, `next` and `try_for_each` resume after the event or
    /// error `f` broke on.
    ///
    /// Faster than `next` in a loop: while one stream stays the winner,
    /// its events are decoded by a loop that keeps the stream's position
    /// in a register from one event to the next, where `next`, returning
    /// after each event, stores it and loads it back.
    ///
    /// ```no_run
    /// use std::ops::ControlFlow;
    /// use strata_ctf::read::{OpenOptions, TraceSet};
    /// let set = TraceSet::open("trace".as_ref(), &OpenOptions::default())?;
    /// let mut switches = 0u64;
    /// let end = set.events().try_for_each(|ev| match ev {
    ///     Ok(ev) => {
    ///         switches += (ev.class().name() == "sched_switch") as u64;
    ///         ControlFlow::Continue(())
    ///     }
    ///     Err(e) => ControlFlow::Break(e),
    /// });
    /// if let ControlFlow::Break(e) = end {
    ///     return Err(e);
    /// }
    /// println!("{switches} switches");
    /// # Ok::<(), strata_ctf::read::ReadError>(())
    /// ```
    #[inline(always)]
    pub fn try_for_each<B, F>(&mut self, mut f: F) -> ControlFlow<B>
    where
        F: FnMut(Result<Event<'_>, ReadError>) -> ControlFlow<B>,
    {
        // Past the event handed out last (by `next`, or before a `Break`),
        // as `next` would go. Then, at the top of the loop, the current
        // stream's event is decoded, the winner, and not handed out yet
        // (or no stream is current).
        if let Some(c) = self.cursors.get_mut(self.current as usize) {
            let k = c.decode_fast();
            if k >= self.bound {
                match self.switch(self.current, k) {
                    None => return ControlFlow::Continue(()),
                    Some(Err(e)) => hand_error(&mut f, e)?,
                    Some(Ok(())) => {}
                }
            }
        }
        loop {
            let ci = self.current;
            let Some(c) = self.cursors.get_mut(ci as usize) else {
                // Not started, or a stream just failed.
                match self.settle() {
                    Ok(true) => self.current = self.winner.1,
                    Ok(false) => return ControlFlow::Continue(()),
                    Err(e) => hand_error(&mut f, e)?,
                }
                continue;
            };
            // The current stream's run: its event, and every next one
            // below the bound.
            let k = c.run(self.bound, &mut |c| f(Ok(Event { c })))?;
            match self.switch(ci, k) {
                None => return ControlFlow::Continue(()),
                Some(Err(e)) => hand_error(&mut f, e)?,
                Some(Ok(())) => {}
            }
        }
    }

    /// For `try_for_each`: stream `ci`, the current one, decoded an event
    /// with key `k` at or above the bound, or `NOT_FAST`. As `next` past its
    /// common case: finds the new current stream, whose event is then
    /// decoded and the winner (`Some(Ok)`); `None` when every stream is
    /// done; the stream's error when it failed (it is dropped, and no
    /// stream is current).
    #[inline(always)]
    fn switch(&mut self, ci: u32, mut k: u64) -> Option<Result<(), ReadError>> {
        if k == NOT_FAST {
            let c = self.cursors.get_mut(ci as usize)?;
            match c.advance_slow() {
                Ok(true) => k = key(c),
                Ok(false) => {
                    self.replay(ci, DONE);
                    if self.winner.0 == DONE {
                        self.current = IDLE;
                        return None;
                    }
                    self.current = self.winner.1;
                    return Some(Ok(()));
                }
                Err(e) => {
                    self.replay(ci, DONE);
                    self.current = IDLE;
                    return Some(Err(e));
                }
            }
            if k < self.bound {
                return Some(Ok(()));
            }
        }
        self.reorder(ci, k);
        Some(Ok(()))
    }

    /// Stream `ci`, the current one, takes key `k` (its event is decoded
    /// and at or above the bound): the winner becomes the current stream.
    #[inline(always)]
    fn reorder(&mut self, ci: u32, k: u64) {
        // (`winner` is only read where a stream ends, which goes through
        // `replay`: the list's first entry is the winner until then.)
        if let Some(o) = &mut self.order {
            if let Some((winner, bound)) = o.reinsert_fast(ci, k) {
                self.bound = bound;
                self.current = winner;
                return;
            }
        }
        self.replay(ci, k);
        self.current = self.winner.1;
    }

    /// The current stream's event.
    #[inline(always)]
    fn current_event(&self) -> Option<Result<Event<'_>, ReadError>> {
        Some(Ok(Event {
            c: &self.cursors[self.current as usize],
        }))
    }

    /// Gives the winner, stream `leaf`, the key `k` and replays its matches
    /// up to the root; then finds the new winner's bound.
    #[inline(never)]
    fn replay(&mut self, leaf: u32, k: u64) {
        if let Some(o) = &mut self.order {
            match o.reinsert(leaf, k) {
                Some(Outcome {
                    winner,
                    winner_key,
                    bound,
                }) => {
                    self.winner = (winner_key, winner);
                    self.bound = bound;
                    return;
                }
                None => {
                    self.tree_from_list(leaf, k);
                    return;
                }
            }
        }
        let mut c = (k, leaf);
        let mut n = (leaf as usize + self.nodes.len()) >> 1;
        while let Some(x) = self.nodes.get_mut(n).filter(|_| n > 0) {
            if *x < c {
                std::mem::swap(x, &mut c);
            }
            n >>= 1;
        }
        self.winner = c;
        self.bound = self.path_min(c.1);
    }

    /// The smallest key among the losers on `w`'s path to the root: the
    /// smallest key of every stream but `w`.
    #[inline(always)]
    fn path_min(&self, w: u32) -> u64 {
        let mut b = DONE;
        let mut n = (w as usize + self.nodes.len()) >> 1;
        while let Some(x) = self.nodes.get(n).filter(|_| n > 0) {
            b = b.min(x.0);
            n >>= 1;
        }
        b
    }

    /// With no event waiting to be advanced past: reads the first event of
    /// every stream not started yet (an error is returned once, that stream
    /// dropped), builds the tree, and says whether the winner has an event.
    #[cold]
    fn settle(&mut self) -> Result<bool, ReadError> {
        while self.primed < self.cursors.len() {
            let i = self.primed;
            self.primed += 1;
            let c = &mut self.cursors[i];
            if c.advance()? {
                self.first[i] = key(c);
            }
        }
        if !self.built {
            self.built = true;
            self.order = SortedList::new(&self.first[..self.cursors.len()]);
            match &self.order {
                Some(o) => {
                    let out = o.first();
                    self.winner = (out.winner_key, out.winner);
                    self.bound = out.bound;
                }
                None => {
                    let first = std::mem::take(&mut self.first);
                    self.build_tree(&first);
                }
            }
            self.first = Vec::new();
        }
        Ok(self.winner.0 < DONE)
    }

    /// Builds the tree from every stream's key (`keys[i]` for stream `i`,
    /// `DONE` past the last) and finds the winner and its bound.
    fn build_tree(&mut self, keys: &[u64]) {
        let size = self.nodes.len();
        // The winner of each subtree; leaves at `size + i`.
        let mut win = vec![(DONE, 0u32); 2 * size];
        for (i, &k) in keys.iter().enumerate().take(size) {
            win[size + i] = (k, i as u32);
        }
        for n in (1..size).rev() {
            let (a, b) = (win[2 * n], win[2 * n + 1]);
            win[n] = a.min(b);
            self.nodes[n] = a.max(b);
        }
        self.winner = if size > 1 { win[1] } else { win[size] };
        self.bound = self.path_min(self.winner.1);
    }

    /// Key `k` of the winner, stream `leaf`, fell out of the sorted list's
    /// range: the tree takes over, built from the keys the list holds and
    /// `k`.
    #[cold]
    fn tree_from_list(&mut self, leaf: u32, k: u64) {
        let Some(o) = self.order.take() else {
            return;
        };
        let mut keys = vec![DONE; self.nodes.len()];
        for (stream, key) in o.others() {
            keys[stream as usize] = key;
        }
        keys[leaf as usize] = k;
        self.build_tree(&keys);
    }

    /// Bytes of stream files whose packets are fully read.
    pub fn bytes_done(&self) -> u64 {
        self.cursors.iter().map(|c| c.done_bytes).sum()
    }

    /// What `skip_corrupt` skipped so far.
    pub fn skipped(&self) -> SkipStats {
        let mut s = SkipStats::default();
        for c in &self.cursors {
            s.add(&c.stats);
        }
        s
    }
}
