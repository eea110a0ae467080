//! The global allocator of the `triage` binary and its benchmarks: mimalloc, asked for memory
//! the way its fast path serves it.
//!
//! Per request, Pingora and triage allocate and free a few dozen small blocks (header maps,
//! names, values, buffers); mimalloc's thread-local free lists serve them in a fraction of glibc
//! malloc's instructions (benches/README.md). The `mimalloc` crate's allocator calls
//! `mi_malloc_aligned` for every block, and mimalloc 3 serves an aligned request from its fast
//! path only while the page at hand has a free block: when it has none (each time a page's free
//! list runs out, many times a second) the request takes the generic aligned path and, for a
//! size that is not a power of two, over-allocates to make room for an alignment every block
//! already has. Under load that was 17 of a request's 89 allocations and about 3,000
//! instructions. Every mimalloc block is aligned to a word, so a layout that asks for no more
//! goes to plain `mi_malloc`, as std's own allocator does with `malloc`.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment every block `mi_malloc` returns has (its bins are multiples of a word, and a
/// page's first block is aligned to 16).
const WORD_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc, with `mi_malloc` for word-aligned layouts and `mi_malloc_aligned` for the rest.
pub struct Mimalloc;

// SAFETY: every pointer returned comes from mimalloc with the layout's size and at least its
// alignment, or is null on failure; `dealloc` and `realloc` receive only pointers this allocator
// returned, which `mi_free` and `mi_realloc(_aligned)` accept whichever call made them.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD_ALIGN {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD_ALIGN {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD_ALIGN {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every small size and every alignment up to a page come back aligned, keep
    /// their contents through a realloc, and zeroed blocks are zero.
    #[test]
    fn blocks_are_aligned_and_keep_their_contents() {
        let allocator = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 3, 8, 24, 40, 100, 1000, 1025, 5000, 70_000] {
                let layout = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: a non-zero size; every pointer is freed once, with its layout.
                unsafe {
                    let p = allocator.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    std::ptr::write_bytes(p, 0xA5, size);
                    let q = allocator.realloc(p, layout, size * 3);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "realloc size {size} align {align}");
                    assert!((0..size).all(|i| *q.add(i) == 0xA5));
                    allocator.dealloc(q, Layout::from_size_align_unchecked(size * 3, align));
                    let z = allocator.alloc_zeroed(layout);
                    assert!(!z.is_null());
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    allocator.dealloc(z, layout);
                }
            }
        }
    }
}
