//! The tests that watch the heap through a `#[global_allocator]`. A binary of
//! their own: the allocator is the whole process's, so in `tests/it` every
//! other test would run under it (and, while a search is armed, have every
//! block it frees read), and what those tests set up process-wide (a
//! Prometheus recorder, log captures, servers and their threads) would run
//! inside the counts and searches that these tests keep exact. One allocator
//! serves both modules:
//!
//! - [`alloc`]: it counts the allocations each thread makes, exactly, so tests
//!   running in parallel do not see each other's ([`allocations`]);
//! - [`zeroize`]: while a search is armed ([`arm`]), it searches every block
//!   being freed, by any thread, for the needles registered with
//!   [`look_for`], and counts the blocks that still hold one ([`found`]).

mod alloc;
mod zeroize;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

struct Watching;

thread_local! {
    // `const` initialisers with no destructor: reading them never allocates,
    // so the allocator can use them.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

/// Allocations (including reallocations) made by `f` on this thread.
pub fn allocations<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    (result, ALLOCATIONS.with(Cell::get) - before)
}

const SLOTS: usize = 8;

static ARMED: AtomicBool = AtomicBool::new(false);
static NEEDLE_PTR: [AtomicPtr<u8>; SLOTS] = [const { AtomicPtr::new(null_mut()) }; SLOTS];
static NEEDLE_LEN: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static FOUND: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

/// Registers what to look for; each needle lives for the whole program.
pub fn look_for(needles: &[(&'static str, &'static [u8])]) -> Vec<&'static str> {
    assert!(needles.len() <= SLOTS);
    for (slot, (_, needle)) in needles.iter().enumerate() {
        NEEDLE_LEN[slot].store(needle.len(), Ordering::SeqCst);
        NEEDLE_PTR[slot].store(needle.as_ptr().cast_mut(), Ordering::SeqCst);
    }
    needles.iter().map(|(name, _)| *name).collect()
}

/// Starts (or stops) searching freed blocks.
pub fn arm(armed: bool) {
    ARMED.store(armed, Ordering::SeqCst);
}

/// Per needle, the freed blocks that held it since the last call.
pub fn found() -> Vec<usize> {
    FOUND.iter().map(|n| n.swap(0, Ordering::SeqCst)).collect()
}

/// Whether `needle` occurs in the `len` bytes at `block`, read with
/// volatile loads (the bytes belong to a block being freed).
///
/// # Safety
/// `block` must be valid for reads of `len` bytes.
unsafe fn contains(block: *const u8, len: usize, needle: &[u8]) -> bool {
    if needle.is_empty() || needle.len() > len {
        return false;
    }
    'start: for start in 0..=len - needle.len() {
        for (i, &want) in needle.iter().enumerate() {
            if std::ptr::read_volatile(block.add(start + i)) != want {
                continue 'start;
            }
        }
        return true;
    }
    false
}

/// While armed: counts the needles in the block about to be freed.
///
/// # Safety
/// `ptr` must be valid for reads of `layout.size()` bytes.
unsafe fn inspect(ptr: *mut u8, layout: Layout) {
    if !ARMED.load(Ordering::SeqCst) {
        return;
    }
    for slot in 0..SLOTS {
        let needle = NEEDLE_PTR[slot].load(Ordering::SeqCst);
        if needle.is_null() {
            continue;
        }
        let needle = std::slice::from_raw_parts(needle, NEEDLE_LEN[slot].load(Ordering::SeqCst));
        if contains(ptr, layout.size(), needle) {
            FOUND[slot].fetch_add(1, Ordering::SeqCst);
        }
    }
}

// SAFETY: every allocation is forwarded to the system allocator; the
// additions are a thread-local counter increment and, while armed, reads of
// the block being freed (still owned, valid for `layout.size()` bytes) and
// atomic counters, none of which allocates. While armed, `realloc` moves
// the block itself (allocate, copy, free through `inspect`) so moved-from
// blocks are searched too; it counts as one allocation either way.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        if !ARMED.load(Ordering::SeqCst) {
            return System.realloc(ptr, layout, new_size);
        }
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new = System.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            inspect(ptr, layout);
            System.dealloc(ptr, layout);
        }
        new
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        inspect(ptr, layout);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Watching = Watching;
