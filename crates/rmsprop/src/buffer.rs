//! Heap arrays the OS can back with huge pages: large buffers are 2 MiB-aligned and,
//! on Linux, advised with `madvise(MADV_HUGEPAGE)` (transparent huge pages in `madvise`
//! mode only use them when asked). Fewer TLB misses let a streaming update such as
//! RMSProp's move more bytes per second; elsewhere the advice is simply not given.

use crate::float::Float;
use std::alloc::{Layout, alloc, dealloc};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Size of a huge page on x86-64 and aarch64 Linux.
pub const HUGE_PAGE: usize = 2 << 20;

/// A fixed-length array of `T`, 2 MiB-aligned and advised for huge pages when it is at
/// least one huge page long, 64-byte aligned otherwise.
///
/// ```
/// let mut b = rmsprop::Buffer::<f32>::filled(4, 1.5);
/// b[0] = 2.0;
/// assert_eq!(&b[..], &[2.0, 1.5, 1.5, 1.5]);
/// ```
pub struct Buffer<T> {
    ptr: NonNull<T>,
    len: usize,
}

// SAFETY: a `Buffer` owns its allocation exactly like a `Vec<T>`.
unsafe impl<T: Send> Send for Buffer<T> {}
unsafe impl<T: Sync> Sync for Buffer<T> {}

impl<T: Float> Buffer<T> {
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

    /// A copy of `values`.
    pub fn from_slice(values: &[T]) -> Self {
        let b = Self::uninit(values.len());
        // SAFETY: the allocation holds `values.len()` elements and does not overlap `values`.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), b.ptr.as_ptr(), values.len()) };
        b
    }

    fn uninit(len: usize) -> Self {
        let Some(layout) = Self::layout(len) else { return Buffer { ptr: NonNull::dangling(), len } };
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw as *mut T) else { std::alloc::handle_alloc_error(layout) };
        if layout.align() == HUGE_PAGE {
            advise_huge_pages(raw, layout.size());
        }
        Buffer { ptr, len }
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
    /// The allocation of `len` elements: 2 MiB-aligned from one huge page up, 64-byte
    /// aligned below, none when empty.
    fn layout(len: usize) -> Option<Layout> {
        let bytes = len.checked_mul(size_of::<T>()).expect("buffer size overflows usize");
        if bytes == 0 {
            return None;
        }
        let align = if bytes >= HUGE_PAGE { HUGE_PAGE } else { 64 };
        Some(Layout::from_size_align(bytes.next_multiple_of(align), align).expect("valid layout"))
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
        if let Some(layout) = Self::layout(self.len) {
            // SAFETY: allocated in `uninit` with this same layout.
            unsafe { dealloc(self.ptr.as_ptr() as *mut u8, layout) }
        }
    }
}

impl<T: Float> Clone for Buffer<T> {
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
