//! One bounded worker pool for everything kopsci does per cluster at once
//! (rendering a fleet, running stages): scoped threads, results in input
//! order, at most `jobs` items in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Threads worth starting for CPU-bound work such as rendering.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Runs `work` on every item, at most `jobs` at a time, and returns the
/// results in item order. `work` returning `None` (skipped) leaves a gap
/// that is dropped. A panic in `work` is resumed on the caller's thread.
pub fn bounded<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> Option<R> + Sync,
) -> Vec<R> {
    let jobs = jobs.max(1).min(items.len().max(1));
    if jobs == 1 {
        return items.iter().filter_map(&work).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    results.lock().unwrap_or_else(PoisonError::into_inner)[i] = result;
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_keeps_order_and_drops_skips() {
        let items: Vec<usize> = (0..20).collect();
        let out = bounded(&items, 4, |&i| (i % 5 != 0).then_some(i * 2));
        let want: Vec<usize> = (0..20).filter(|i| i % 5 != 0).map(|i| i * 2).collect();
        assert_eq!(out, want);
        assert_eq!(bounded(&items, 1, |&i| Some(i)), items);
        assert!(bounded(&[] as &[usize], 3, |&i| Some(i)).is_empty());
    }

    #[test]
    fn never_more_than_jobs_at_once() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<usize> = (0..32).collect();
        bounded(&items, 3, |_| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            running.fetch_sub(1, Ordering::SeqCst);
            Some(())
        });
        assert!(peak.load(Ordering::SeqCst) <= 3);
    }
}
