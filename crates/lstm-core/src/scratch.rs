//! Scratch buffers: the one per-thread pool every CPU kernel draws its working memory from.
//! A batch of a large model keeps hundreds of MB; allocated afresh, they came back from the
//! kernel as new pages to be zeroed and faulted in (a sixth of a batch's time), so a
//! finished buffer waits here for the next user on the same thread.

use std::cell::RefCell;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// At most this many buffers wait in a thread's pool: a batch uses about eight per layer.
const POOL_SIZE: usize = 64;

/// Buffers smaller than this many values are not kept: allocating them is cheap.
const SMALLEST_KEPT: usize = 1 << 12;

/// A buffer of `len` values that its user overwrites whole (its contents are whatever its
/// last user left).
pub fn take(len: usize) -> Vec<f32> {
    pooled(len, false)
}

/// A buffer of `len` zeros.
pub fn take_zeroed(len: usize) -> Vec<f32> {
    pooled(len, true)
}

/// The smallest pooled buffer of at least `len` values, or a new one.
fn pooled(len: usize, zero: bool) -> Vec<f32> {
    let reused = POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        best.map(|i| pool.swap_remove(i))
    });
    match reused {
        Some(mut v) => {
            if zero {
                v.clear();
            }
            v.resize(len, 0.0);
            v
        }
        None => vec![0f32; len],
    }
}

/// Returns `v` to this thread's pool (the smallest buffer goes when the pool is full).
pub fn give_back(v: Vec<f32>) {
    if v.capacity() < SMALLEST_KEPT {
        return;
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        pool.push(v);
        if pool.len() > POOL_SIZE {
            let smallest = (0..pool.len())
                .min_by_key(|&i| pool[i].capacity())
                .expect("a full pool");
            pool.swap_remove(smallest);
        }
    });
}

/// Runs `f` with `N` buffers of `lens` values from the pool (zeros with `zeroed`, else
/// whatever their last user left), returned to it afterwards.
pub fn with<const N: usize, R>(
    lens: [usize; N],
    zeroed: bool,
    f: impl FnOnce([&mut [f32]; N]) -> R,
) -> R {
    let mut buffers = lens.map(|len| pooled(len, zeroed));
    let out = f(buffers.each_mut().map(|v| v.as_mut_slice()));
    buffers.into_iter().for_each(give_back);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_reused_and_zeroed_when_asked() {
        let mut v = take(1 << 13);
        v.fill(7.0);
        let at = v.as_ptr();
        give_back(v);
        let again = take(1 << 12);
        assert_eq!((again.as_ptr(), again.len(), again[0]), (at, 1 << 12, 7.0));
        give_back(again);
        let zeros = take_zeroed(1 << 13);
        assert_eq!(zeros.as_ptr(), at);
        assert!(zeros.iter().all(|&x| x == 0.0));
        give_back(zeros);
        with([1 << 12, 10], true, |[a, b]| {
            assert_eq!((a.len(), b.len()), (1 << 12, 10));
            assert!(a.iter().chain(b.iter()).all(|&x| x == 0.0));
        });
    }
}
