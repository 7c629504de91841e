//! A BPF array created with BPF_F_MMAPABLE, memory-mapped: user space reads and writes its
//! elements with atomic loads and stores, no syscall per element, while the fast path
//! reads them.

use std::{os::fd::AsFd, ptr::NonNull};

use aya::maps::MapData;

/// `A` is the element's atomic type (`AtomicU64` for an `Array<u64>`). The kernel keeps
/// array elements 8 bytes apart, so a smaller `A` only fits an array of 8-byte elements
/// seen as several words each (the IPv4 direct table).
pub struct MappedArray<A> {
    /// Keeps the map (and so the mapping's file) open.
    _map: MapData,
    elements: NonNull<A>,
    len: usize,
}

// SAFETY: the mapping is owned by this value and its elements are atomics.
unsafe impl<A: Sync> Send for MappedArray<A> {}
unsafe impl<A: Sync> Sync for MappedArray<A> {}

impl<A> MappedArray<A> {
    /// Maps the whole value area of `map`, an array of `len` elements of `A`'s size.
    pub fn new(map: MapData, len: usize) -> std::io::Result<Self> {
        // SAFETY: a fresh shared mapping of the map's value area (the kernel refuses a
        // length beyond it); the kernel keeps the pages alive while mapped; unmapped in
        // Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len * size_of::<A>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&map.fd().as_fd()),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            _map: map,
            elements: NonNull::new(ptr.cast()).expect("mmap returned a mapping"),
            len,
        })
    }

    /// Element `i`; panics beyond the array.
    pub fn at(&self, i: usize) -> &A {
        assert!(i < self.len, "element {i} of {}", self.len);
        // SAFETY: inside the mapping, which lives as long as self.
        unsafe { &*self.elements.as_ptr().add(i) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<A> Drop for MappedArray<A> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, not used after this.
        unsafe { libc::munmap(self.elements.as_ptr().cast(), self.len * size_of::<A>()) };
    }
}
