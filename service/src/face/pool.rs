//! A fixed set of slots checked out for one analysis at a time.
//!
//! The mutex guards only the free list (a push or a pop); nothing holds it while a slot
//! is in use, so slots run in parallel.

use std::sync::{Condvar, Mutex};

/// A blocking object pool of fixed size.
#[derive(Debug)]
pub(crate) struct Pool<T> {
    free: Mutex<Vec<T>>,
    returned: Condvar,
    size: usize,
}

impl<T> Pool<T> {
    pub fn new(items: Vec<T>) -> Self {
        let size = items.len();
        Self {
            free: Mutex::new(items),
            returned: Condvar::new(),
            size,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Takes a slot, waiting for one to be returned when all are busy.
    pub fn checkout(&self) -> Slot<'_, T> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(item) = free.pop() {
                return Slot {
                    pool: self,
                    item: Some(item),
                };
            }
            free = self.returned.wait(free).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn give_back(&self, item: T) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.push(item);
        drop(free);
        self.returned.notify_one();
    }
}

/// A checked-out slot; returned to the pool on drop (also when the analysis panics).
#[derive(Debug)]
pub(crate) struct Slot<'p, T> {
    pool: &'p Pool<T>,
    item: Option<T>,
}

impl<T> std::ops::Deref for Slot<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // `item` is only `None` inside `drop`.
        match &self.item {
            Some(t) => t,
            None => unreachable!("slot used after drop"),
        }
    }
}

impl<T> std::ops::DerefMut for Slot<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.item {
            Some(t) => t,
            None => unreachable!("slot used after drop"),
        }
    }
}

impl<T> Drop for Slot<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.pool.give_back(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn at_most_size_in_use_and_all_come_back() {
        let pool = Arc::new(Pool::new(vec![0u32, 1]));
        let in_use = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (pool, in_use, peak) = (pool.clone(), in_use.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let mut slot = pool.checkout();
                        let n = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        *slot += 1;
                        std::thread::yield_now();
                        in_use.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 2);
        let a = pool.checkout();
        let b = pool.checkout();
        assert_eq!(*a + *b, 160 + 1);
    }
}
