//! KV-cache memory that several threads may use at once.
//!
//! The engine can run one step as several independent forward passes, one
//! per thread, each over its own sequences (`fulcrum-engine`'s runner: a
//! decode step of many sequences then needs no synchronization between
//! operations). Their sequences' blocks are disjoint, except prefix blocks
//! they only read — but the blocks are interleaved in one pool, so no thread
//! may hold a Rust reference to a whole layer while another writes part of
//! it. The cache is therefore a slice of [`KvCell`]s (an `UnsafeCell` per
//! element), and kernels borrow only the ranges they touch, through
//! [`KvSlice`]'s unsafe methods, whose contract is the block manager's
//! invariant: a range is never written by one thread while another uses it.

use std::cell::UnsafeCell;
use std::ops::Range;

/// One element of the cache.
#[repr(transparent)]
pub struct KvCell<T>(UnsafeCell<T>);

// SAFETY: every access goes through `KvSlice`'s unsafe methods, whose callers
// promise that no element is written by one thread while another touches it.
unsafe impl<T: Send> Sync for KvCell<T> {}

/// A vector's elements as cells (same layout: `KvCell` and `UnsafeCell`
/// are transparent), keeping its allocation — a zeroed `vec![0; n]` stays
/// lazily mapped by the OS.
pub fn cells_from_vec<T>(v: Vec<T>) -> Box<[KvCell<T>]> {
    let b = Box::into_raw(v.into_boxed_slice());
    // SAFETY: `KvCell<T>` has the layout of `T`; the box is moved, not copied.
    unsafe { Box::from_raw(b as *mut [KvCell<T>]) }
}

/// A borrowed run of cells.
pub struct KvSlice<'a, T> {
    cells: &'a [KvCell<T>],
}

impl<T> Clone for KvSlice<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for KvSlice<'_, T> {}

impl<'a, T> KvSlice<'a, T> {
    pub fn new(cells: &'a [KvCell<T>]) -> Self {
        KvSlice { cells }
    }

    /// An exclusively borrowed slice seen as cells (as `Cell::from_mut`).
    pub fn from_mut(s: &'a mut [T]) -> Self {
        // SAFETY: same layout; the exclusive borrow lasts as long as the view.
        KvSlice {
            cells: unsafe { &*(s as *mut [T] as *const [KvCell<T>]) },
        }
    }

    /// A shared slice seen as cells, for reading only.
    ///
    /// # Safety
    /// Nothing may be written through the view.
    pub(crate) unsafe fn from_ref(s: &'a [T]) -> Self {
        // SAFETY: same layout; the caller only reads.
        KvSlice {
            cells: unsafe { &*(s as *const [T] as *const [KvCell<T>]) },
        }
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The first element's address (for SIMD loads and prefetches).
    pub fn as_ptr(&self) -> *mut T {
        UnsafeCell::raw_get(self.cells.as_ptr().cast::<UnsafeCell<T>>())
    }

    /// Elements `r`, to read. Panics if `r` is out of bounds.
    ///
    /// # Safety
    /// No thread writes any of them while the returned slice lives.
    pub unsafe fn range(&self, r: Range<usize>) -> &'a [T] {
        let c = &self.cells[r];
        // SAFETY: in bounds (checked above); the caller excludes writers.
        unsafe {
            std::slice::from_raw_parts(
                UnsafeCell::raw_get(c.as_ptr().cast::<UnsafeCell<T>>()),
                c.len(),
            )
        }
    }

    /// Elements `r`, to write. Panics if `r` is out of bounds.
    ///
    /// # Safety
    /// No other thread, and no other live slice, touches any of them while
    /// the returned slice lives.
    #[allow(clippy::mut_from_ref)] // the cells are the interior mutability
    pub unsafe fn range_mut(&self, r: Range<usize>) -> &'a mut [T] {
        let c = &self.cells[r];
        // SAFETY: in bounds; the caller guarantees exclusive access.
        unsafe {
            std::slice::from_raw_parts_mut(
                UnsafeCell::raw_get(c.as_ptr().cast::<UnsafeCell<T>>()),
                c.len(),
            )
        }
    }

    /// Element `i`. Panics if out of bounds.
    ///
    /// # Safety
    /// No thread writes it concurrently.
    pub unsafe fn read(&self, i: usize) -> T
    where
        T: Copy,
    {
        // SAFETY: in bounds (indexing checks); the caller excludes writers.
        unsafe { *self.cells[i].0.get() }
    }
}
