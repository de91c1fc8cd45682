//! Heap arrays the OS can back with huge pages: large buffers are 2 MiB-aligned and,
//! on Linux, advised with `madvise(MADV_HUGEPAGE)` (transparent huge pages in `madvise`
//! mode only use them when asked). Fewer TLB misses let a streaming update such as
//! RMSProp's move more bytes per second; elsewhere the advice is simply not given.
//!
//! Huge pages have a trap: arrays that all start on a 2 MiB boundary, allocated one
//! after another, keep element `i` of each at addresses a large power of two apart, which
//! the memory controller can map to the same DRAM banks. Measured on this project's AMD
//! EPYC machine, three 400 MB arrays 384 MiB apart streamed at 12 GB/s, against 35-43
//! GB/s one huge page further apart or with ordinary pages. So each large buffer starts
//! its data a different number of cache lines into its allocation (its *colour*; the
//! classic array-padding remedy, as in STREAM's offset).

use std::alloc::{Layout, alloc, dealloc};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Size of a huge page on x86-64 and aarch64 Linux.
pub const HUGE_PAGE: usize = 2 << 20;

/// How far apart the colours of large buffers start: 128 KiB and a cache line, so that
/// successive buffers differ in their address bits from the line up to the huge page.
/// Measured on three 400 MB arrays 384 MiB apart: 12 GB/s unstaggered; staggered by
/// 4160 B 27-29, by 64 KiB + 64 32-34, by this 34-37 (ordinary pages: 29-33).
const STAGGER: usize = (128 << 10) + 64;
/// Number of colours (offsets below 1 MiB); buffers allocated in sequence, such as a
/// step's parameters, gradients and state slots, get different ones.
const COLORS: usize = 8;
/// The colour of the next large buffer.
static NEXT_COLOR: AtomicUsize = AtomicUsize::new(0);

/// A fixed-length array of `T`, 64-byte aligned; from one huge page up, held in a 2 MiB-
/// aligned allocation advised for huge pages, its data starting at its colour's offset
/// (see the module doc).
///
/// ```
/// let mut b = rmsprop::Buffer::<f32>::filled(4, 1.5);
/// b[0] = 2.0;
/// assert_eq!(&b[..], &[2.0, 1.5, 1.5, 1.5]);
/// assert_eq!(b.as_ptr() as usize % 64, 0);
/// ```
pub struct Buffer<T> {
    ptr: NonNull<T>,
    len: usize,
    /// Bytes from the start of the allocation to the data.
    offset: usize,
}

// SAFETY: a `Buffer` owns its allocation exactly like a `Vec<T>`.
unsafe impl<T: Send> Send for Buffer<T> {}
unsafe impl<T: Sync> Sync for Buffer<T> {}

impl<T: Copy> Buffer<T> {
    /// `len` copies of `value`.
    pub fn filled(len: usize, value: T) -> Self {
        let b = Self::uninit(len);
        // SAFETY: `uninit` allocated `len` elements; `T: Copy` has no drop glue.
        unsafe {
            for i in 0..len {
                b.ptr.as_ptr().add(i).write(value);
            }
        }
        b
    }

    /// `len` copies of `value`, or `None` when the memory cannot be had (instead of
    /// aborting the process as [`filled`](Self::filled) does).
    ///
    /// ```
    /// assert!(rmsprop::Buffer::<f32>::try_filled(1 << 60, 0.0).is_none());
    /// assert_eq!(&rmsprop::Buffer::<f32>::try_filled(2, 1.0).unwrap()[..], &[1.0, 1.0]);
    /// ```
    pub fn try_filled(len: usize, value: T) -> Option<Self> {
        let b = Self::try_uninit(len)?;
        // SAFETY: `try_uninit` allocated `len` elements; `T: Copy` has no drop glue.
        unsafe {
            for i in 0..len {
                b.ptr.as_ptr().add(i).write(value);
            }
        }
        Some(b)
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[T]) -> Self {
        let b = Self::uninit(values.len());
        // SAFETY: the allocation holds `values.len()` elements and does not overlap `values`.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), b.ptr.as_ptr(), values.len()) };
        b
    }

    fn uninit(len: usize) -> Self {
        Self::try_uninit(len).unwrap_or_else(|| {
            let bytes = len.saturating_mul(size_of::<T>());
            panic!("cannot allocate a buffer of {len} elements ({bytes} bytes)")
        })
    }

    /// An allocation for `len` elements, or `None` when its size overflows or the
    /// allocator has no memory for it.
    fn try_uninit(len: usize) -> Option<Self> {
        let huge = len.saturating_mul(size_of::<T>()) >= HUGE_PAGE;
        let offset = if huge { NEXT_COLOR.fetch_add(1, Ordering::Relaxed) % COLORS * STAGGER } else { 0 };
        let layout = match Self::layout(len, offset) {
            Ok(Some(layout)) => layout,
            Ok(None) => return Some(Buffer { ptr: NonNull::dangling(), len, offset }),
            Err(()) => return None,
        };
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(layout) };
        if raw.is_null() {
            return None;
        }
        if huge {
            advise_huge_pages(raw, layout.size());
        }
        // SAFETY: `offset + len * size_of::<T>()` bytes fit in the allocation (see `layout`),
        // and `offset` is a multiple of 64, so the data stays aligned for `T`.
        let ptr = unsafe { NonNull::new_unchecked(raw.add(offset) as *mut T) };
        Some(Buffer { ptr, len, offset })
    }
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    // SAFETY: the range is one live allocation; the advice changes no contents. A failure
    // (no THP support) leaves ordinary pages, which is correct, only slower.
    unsafe {
        libc::madvise(ptr as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_: *mut u8, _: usize) {}

impl<T> Buffer<T> {
    /// The allocation of `len` elements starting `offset` bytes in: 2 MiB-aligned from one
    /// huge page of data up, 64-byte aligned below, none when empty; `Err` when the size
    /// overflows what a layout can describe.
    fn layout(len: usize, offset: usize) -> Result<Option<Layout>, ()> {
        assert!(align_of::<T>() <= 64, "Buffer holds types aligned to at most 64 bytes");
        let bytes = len.checked_mul(size_of::<T>()).ok_or(())?;
        if bytes == 0 {
            return Ok(None);
        }
        let align = if bytes >= HUGE_PAGE { HUGE_PAGE } else { 64 };
        let total = bytes.checked_add(offset).and_then(|t| t.checked_next_multiple_of(align)).ok_or(())?;
        Layout::from_size_align(total, align).map(Some).map_err(|_| ())
    }
}

impl<T> Buffer<T> {
    /// A raw pointer to the first element, with the whole allocation's provenance, made
    /// without a `&mut [T]` (which `slice::as_mut_ptr` through `DerefMut` would create over
    /// the whole buffer, invalidating under Stacked Borrows the pointers taken before it):
    /// pointers to several tensors' state in one arena can be taken one after another and
    /// all stay valid.
    ///
    /// ```
    /// let mut b = rmsprop::Buffer::filled(4, 0.0f32);
    /// let (p, q) = (b.as_mut_ptr(), b.as_mut_ptr().wrapping_add(2));
    /// // SAFETY: both point into `b`'s 4 elements, and nothing else refers to them
    /// unsafe { *q = 2.0; *p = 1.0; }
    /// assert_eq!(&*b, [1.0, 0.0, 2.0, 0.0]);
    /// ```
    pub fn as_mut_ptr(&mut self) -> *mut T {
        self.ptr.as_ptr()
    }
}

impl<T> Deref for Buffer<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialised elements (or is dangling with `len == 0`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for Buffer<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> AsRef<[T]> for Buffer<T> {
    fn as_ref(&self) -> &[T] {
        self
    }
}

impl<T> AsMut<[T]> for Buffer<T> {
    fn as_mut(&mut self) -> &mut [T] {
        self
    }
}

impl<T> Drop for Buffer<T> {
    fn drop(&mut self) {
        if let Ok(Some(layout)) = Self::layout(self.len, self.offset) {
            // SAFETY: allocated in `uninit` with this same layout, `offset` bytes before the data.
            unsafe { dealloc((self.ptr.as_ptr() as *mut u8).sub(self.offset), layout) }
        }
    }
}

impl<T: Copy> Clone for Buffer<T> {
    fn clone(&self) -> Self {
        Buffer::from_slice(self)
    }
}

/// Shows the length and the first few elements: an optimizer's state can hold 10⁸ of them.
impl<T: fmt::Debug> fmt::Debug for Buffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Buffer(len {}, ", self.len)?;
        f.debug_list().entries(self.iter().take(4)).finish()?;
        f.write_str(if self.len > 4 { " ...)" } else { ")" })
    }
}

impl<T: PartialEq> PartialEq for Buffer<T> {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Large buffers allocated in sequence start at different offsets within their huge
    /// pages, 64-byte aligned, inside 2 MiB-aligned allocations; their contents are intact.
    #[test]
    fn large_buffers_are_staggered() {
        let n = HUGE_PAGE / 4 + 3;
        let bufs: Vec<Buffer<f32>> = (0..4).map(|i| Buffer::filled(n, i as f32)).collect();
        assert!(bufs.iter().all(|b| b.offset < 1 << 20));
        let offsets: Vec<usize> = bufs.iter().map(|b| b.as_ptr() as usize % HUGE_PAGE).collect();
        for (i, b) in bufs.iter().enumerate() {
            assert_eq!(b.len(), n);
            assert!(b.iter().all(|&v| v == i as f32));
            assert_eq!(b.as_ptr() as usize % 64, 0);
            assert_eq!((b.as_ptr() as usize - b.offset) % HUGE_PAGE, 0, "allocation not 2 MiB-aligned");
        }
        for i in 0..4 {
            for j in i + 1..4 {
                assert_ne!(offsets[i], offsets[j], "buffers {i} and {j} start alike: {offsets:?}");
            }
        }
        let small = Buffer::filled(10, 1.0f64);
        assert_eq!(small.offset, 0);
        assert_eq!(small.as_ptr() as usize % 64, 0);
    }
}
