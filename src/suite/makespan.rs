//! How good a plan is: the makespan of batches dispatched in order onto a number of slots, and
//! the lower bound no plan can beat. Benchmarks report their ratio.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// No schedule of these durations on `slots` slots finishes sooner than this: the longest
/// indivisible piece, or the total spread evenly (rounded up). `slots` of 0 counts as 1.
pub fn lower_bound_ms(durations: &[u64], slots: usize) -> u64 {
    let total: u64 = durations.iter().sum();
    let longest = durations.iter().copied().max().unwrap_or(0);
    longest.max(total.div_ceil(slots.max(1) as u64))
}

/// When the last of `batches` (durations, in dispatch order) finishes if each goes to the slot
/// that frees up first, as a dynamic queue hands them out. `slots` of 0 counts as 1.
pub fn makespan_ms(batches: &[u64], slots: usize) -> u64 {
    let mut free_at: BinaryHeap<Reverse<u64>> = (0..slots.max(1)).map(|_| Reverse(0)).collect();
    let mut end = 0;
    for &duration in batches {
        let Some(Reverse(start)) = free_at.pop() else {
            break;
        };
        end = end.max(start + duration);
        free_at.push(Reverse(start + duration));
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_the_longest_piece_or_the_even_spread() {
        assert_eq!(lower_bound_ms(&[10, 1, 1], 2), 10);
        assert_eq!(lower_bound_ms(&[3, 3, 3], 2), 5);
        assert_eq!(lower_bound_ms(&[], 4), 0);
        assert_eq!(lower_bound_ms(&[7], 0), 7);
    }

    #[test]
    fn each_batch_goes_to_the_first_free_slot() {
        // A: 5; B: 4, then 2 at 4 (free at 6); A is free first again at 5: 3 ends at 8.
        assert_eq!(makespan_ms(&[5, 4, 2, 3], 2), 8);
        // The long one last leaves one slot working alone.
        assert_eq!(makespan_ms(&[1, 1, 1, 1, 8], 2), 10);
        assert_eq!(makespan_ms(&[8, 1, 1, 1, 1], 2), 8);
        assert_eq!(makespan_ms(&[], 3), 0);
    }
}
