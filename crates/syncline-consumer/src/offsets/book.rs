//! The offset book: contiguous completion tracking per owned partition.
//!
//! Records of one partition are registered in the order Kafka delivered them and marked
//! done in any order (batches finish out of order, retries finish late). The committable
//! position is the offset after the longest prefix of registered records that are all
//! done, so a commit never passes a record that is not yet applied, stale or
//! dead-lettered. Offsets need not be dense: compaction and transaction markers leave
//! gaps, and a gap below a done record is committed over.

use std::collections::{HashMap, VecDeque};

/// What [`OffsetBook::register`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Tracked: it will be committed over only once done.
    Registered,
    /// Its assignment was revoked meanwhile: dropped, the new owner reads it again.
    NotOwned,
    /// At or below the highest offset already registered in this assignment: librdkafka
    /// delivered it again (e.g. after a seek). Dropped, since the first copy is tracked;
    /// counted and logged because it should be rare.
    AtOrBelowLast {
        /// The highest offset registered so far.
        last: i64,
    },
}

/// Completion state of one partition within one assignment.
#[derive(Debug, Default, Clone)]
pub struct PartitionOffsets {
    /// Registered records not yet part of the done prefix, in offset order.
    pending: VecDeque<(i64, bool)>,
    /// Highest offset ever registered (to ignore redeliveries within the assignment).
    last_registered: Option<i64>,
    /// The offset after the done prefix, once anything was registered.
    done_next: Option<i64>,
    /// The last position sent in a commit (successful or not yet known).
    committed: Option<i64>,
}

impl PartitionOffsets {
    /// Register a received record. Offsets at or below the last registered one are
    /// redeliveries of records already tracked and are ignored (returns `false`).
    pub fn register(&mut self, offset: i64) -> bool {
        if self.last_registered.is_some_and(|last| offset <= last) {
            return false;
        }
        self.last_registered = Some(offset);
        self.pending.push_back((offset, false));
        true
    }

    /// Mark a registered record done. Unknown offsets are ignored (returns `false`).
    pub fn complete(&mut self, offset: i64) -> bool {
        let Some(entry) = self
            .pending
            .binary_search_by_key(&offset, |(o, _)| *o)
            .ok()
            .and_then(|i| self.pending.get_mut(i))
        else {
            return false;
        };
        entry.1 = true;
        while let Some(&(o, true)) = self.pending.front() {
            self.done_next = Some(o + 1);
            self.pending.pop_front();
        }
        true
    }

    /// The position (next offset to read) that may be committed: everything below it is
    /// done. `None` if nothing is done yet.
    pub fn done_position(&self) -> Option<i64> {
        self.done_next
    }

    /// The done position if it is ahead of what was last committed.
    pub fn committable(&self) -> Option<i64> {
        match (self.done_next, self.committed) {
            (Some(d), Some(c)) if d <= c => None,
            (d, _) => d,
        }
    }

    /// Record that `position` was sent in a commit.
    pub fn mark_committed(&mut self, position: i64) {
        if self.committed.is_none_or(|c| position > c) {
            self.committed = Some(position);
        }
    }

    /// An asynchronous commit failed: forget what was sent so the next tick resends it.
    pub fn commit_failed(&mut self, position: i64) {
        if self.committed == Some(position) {
            self.committed = None;
        }
    }

    /// Records registered but not done.
    pub fn outstanding(&self) -> usize {
        self.pending.iter().filter(|(_, d)| !d).count()
    }
}

/// One assigned partition: its assignment epoch and its tracker.
#[derive(Debug)]
pub struct Assigned {
    /// Changes on every (re)assignment; work stamped with an older epoch is ignored.
    pub epoch: u64,
    /// Completion tracking for this assignment.
    pub offsets: PartitionOffsets,
}

/// Offsets of every partition this instance owns, keyed by partition.
#[derive(Debug, Default)]
pub struct OffsetBook {
    partitions: HashMap<i32, Assigned>,
    next_epoch: u64,
}

impl OffsetBook {
    /// Start tracking a newly assigned partition (a partition already owned keeps its
    /// state: eager assignment lists every partition again). Returns its epoch.
    pub fn assign(&mut self, partition: i32) -> u64 {
        if let Some(a) = self.partitions.get(&partition) {
            return a.epoch;
        }
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        self.partitions.insert(
            partition,
            Assigned {
                epoch,
                offsets: PartitionOffsets::default(),
            },
        );
        epoch
    }

    /// Stop tracking a revoked partition; returns its final state.
    pub fn revoke(&mut self, partition: i32) -> Option<Assigned> {
        self.partitions.remove(&partition)
    }

    /// The current epoch of `partition`, if owned.
    pub fn epoch(&self, partition: i32) -> Option<u64> {
        self.partitions.get(&partition).map(|a| a.epoch)
    }

    /// Register a record if `epoch` is still current, saying what became of it.
    pub fn register(&mut self, partition: i32, epoch: u64, offset: i64) -> Registration {
        match self.partitions.get_mut(&partition) {
            Some(a) if a.epoch == epoch => {
                if a.offsets.register(offset) {
                    Registration::Registered
                } else {
                    Registration::AtOrBelowLast {
                        last: a.offsets.last_registered.unwrap_or(offset),
                    }
                }
            }
            _ => Registration::NotOwned,
        }
    }

    /// Mark a record done if `epoch` is still current; late outcomes of revoked
    /// assignments are ignored.
    pub fn complete(&mut self, partition: i32, epoch: u64, offset: i64) -> bool {
        match self.partitions.get_mut(&partition) {
            Some(a) if a.epoch == epoch => a.offsets.complete(offset),
            _ => false,
        }
    }

    /// Is (partition, epoch) still owned?
    pub fn is_current(&self, partition: i32, epoch: u64) -> bool {
        self.epoch(partition) == Some(epoch)
    }

    /// Every partition whose done position is ahead of its last commit.
    pub fn committable(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|(p, a)| a.offsets.committable().map(|o| (*p, o)))
            .collect()
    }

    /// Every partition with a done position (for final, synchronous commits).
    pub fn done_positions(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|(p, a)| a.offsets.done_position().map(|o| (*p, o)))
            .collect()
    }

    /// Record that positions were sent in a commit.
    pub fn mark_committed(&mut self, positions: &[(i32, i64)]) {
        for (p, o) in positions {
            if let Some(a) = self.partitions.get_mut(p) {
                a.offsets.mark_committed(*o);
            }
        }
    }

    /// An asynchronous commit of `position` for `partition` failed.
    pub fn commit_failed(&mut self, partition: i32, position: i64) {
        if let Some(a) = self.partitions.get_mut(&partition) {
            a.offsets.commit_failed(position);
        }
    }

    /// Owned partitions.
    pub fn partitions(&self) -> Vec<i32> {
        self.partitions.keys().copied().collect()
    }

    /// Number of owned partitions.
    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    /// Owns no partition?
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commits_only_the_contiguous_prefix() {
        let mut p = PartitionOffsets::default();
        for o in [3, 4, 7, 8] {
            assert!(p.register(o));
        }
        assert_eq!(p.committable(), None);
        p.complete(4);
        assert_eq!(p.committable(), None, "3 is not done");
        p.complete(3);
        assert_eq!(p.committable(), Some(5));
        p.mark_committed(5);
        assert_eq!(p.committable(), None);
        p.complete(8);
        assert_eq!(p.committable(), None, "7 is not done");
        p.complete(7);
        assert_eq!(p.committable(), Some(9), "gap 5..7 is committed over");
    }

    #[test]
    fn redeliveries_and_unknown_offsets_are_ignored() {
        let mut p = PartitionOffsets::default();
        assert!(p.register(10));
        assert!(!p.register(10));
        assert!(!p.register(9));
        assert!(!p.complete(11));
        assert!(p.complete(10));
        assert_eq!(p.committable(), Some(11));
    }

    #[test]
    fn an_offset_at_or_below_the_last_is_reported_not_silently_ignored() {
        let mut book = OffsetBook::default();
        let e = book.assign(3);
        assert_eq!(book.register(3, e, 10), Registration::Registered);
        assert_eq!(
            book.register(3, e, 10),
            Registration::AtOrBelowLast { last: 10 }
        );
        assert_eq!(
            book.register(3, e, 7),
            Registration::AtOrBelowLast { last: 10 }
        );
        assert_eq!(book.register(3, e, 11), Registration::Registered);
    }

    #[test]
    fn failed_async_commit_is_resent() {
        let mut p = PartitionOffsets::default();
        p.register(0);
        p.complete(0);
        p.mark_committed(1);
        assert_eq!(p.committable(), None);
        p.commit_failed(1);
        assert_eq!(p.committable(), Some(1));
    }

    #[test]
    fn late_outcomes_of_a_revoked_assignment_are_ignored() {
        let mut book = OffsetBook::default();
        let e1 = book.assign(0);
        assert_eq!(book.register(0, e1, 5), Registration::Registered);
        book.revoke(0);
        assert_eq!(book.register(0, e1, 6), Registration::NotOwned);
        let e2 = book.assign(0);
        assert_ne!(e1, e2);
        assert!(!book.complete(0, e1, 5));
        assert_eq!(book.register(0, e2, 5), Registration::Registered);
        assert_eq!(book.committable(), vec![]);
        assert!(book.complete(0, e2, 5));
        assert_eq!(book.committable(), vec![(0, 6)]);
    }

    proptest! {
        /// Whatever order records complete in, the committable position never passes a
        /// record that is not done, and ends at last+1 once all are done.
        #[test]
        fn any_completion_order_commits_only_contiguous_prefixes(
            gaps in proptest::collection::vec(1i64..4, 1..60),
            order in any::<proptest::sample::Index>(),
            seed in any::<u64>(),
        ) {
            let mut offsets = Vec::new();
            let mut o = 0i64;
            for g in gaps { o += g; offsets.push(o); }
            let mut p = PartitionOffsets::default();
            for &o in &offsets { prop_assert!(p.register(o)); }
            // A deterministic permutation from the seed.
            let mut perm: Vec<usize> = (0..offsets.len()).collect();
            let mut s = seed ^ (order.index(1000) as u64);
            for i in (1..perm.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = (s >> 33) as usize % (i + 1);
                perm.swap(i, j);
            }
            let mut done = vec![false; offsets.len()];
            for &i in &perm {
                p.complete(offsets[i]);
                done[i] = true;
                if let Some(pos) = p.committable() {
                    for (k, &off) in offsets.iter().enumerate() {
                        if off < pos { prop_assert!(done[k], "committed {pos} past pending {off}"); }
                    }
                    // The position is exactly after the done prefix.
                    let prefix = done.iter().take_while(|d| **d).count();
                    prop_assert!(prefix > 0);
                    prop_assert_eq!(pos, offsets[prefix - 1] + 1);
                } else {
                    prop_assert!(!done[0]);
                }
            }
            prop_assert_eq!(p.committable(), Some(offsets[offsets.len() - 1] + 1));
            prop_assert_eq!(p.outstanding(), 0);
        }
    }
}
