//! A BPF array created with BPF_F_MMAPABLE, memory-mapped a window at a time: user space
//! reads and writes its elements with atomic loads and stores, no syscall per element,
//! while the fast path reads them.
//!
//! Why windows: the kernel fills a mapping of a BPF array whole when it is made, so a
//! mapping of the 64 MiB IPv4 direct table counted 64 MiB in the daemon's RSS for as long
//! as it lived (the memory is the map's, charged once more as memlock). Windows of 1 MiB
//! are mapped when an element is touched, at most `MAX_WINDOWS` at once (least recently
//! used unmapped first), and all unmapped by `release` (the daemon calls it between
//! operations), so an idle daemon maps none and a batch of a million routes maps a few.

use std::{
    marker::PhantomData,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::Mutex,
};

use aya::maps::MapData;

/// Bytes per window (a multiple of the page size).
const WINDOW_BYTES: usize = 1 << 20;
/// Windows mapped at once, at most.
const MAX_WINDOWS: usize = 8;

/// One mapped window: `bytes` of the value area from `offset`.
struct Window {
    offset: usize,
    ptr: NonNull<u8>,
    bytes: usize,
}

// SAFETY: a window is a plain shared mapping owned by its MappedArray.
unsafe impl Send for Window {}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: the mapping made for this window, not used after this.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

/// `A` is the element's atomic type (`AtomicU64` for an `Array<u64>`). The kernel keeps
/// array elements 8 bytes apart, so a smaller `A` only fits an array of 8-byte elements
/// seen as several words each (the IPv4 direct table).
pub struct MappedArray<A> {
    map: MapData,
    len: usize,
    /// Mapped now, the most recently used last.
    windows: Mutex<Vec<Window>>,
    _element: PhantomData<A>,
}

impl<A> MappedArray<A> {
    /// The value area of `map`, an array of `len` elements of `A`'s size; maps its first
    /// window once, so that a map that cannot be mapped is refused here.
    pub fn new(map: MapData, len: usize) -> std::io::Result<Self> {
        let array = Self {
            map,
            len,
            windows: Mutex::new(Vec::new()),
            _element: PhantomData,
        };
        drop(array.map_window(0)?);
        Ok(array)
    }

    fn total_bytes(&self) -> usize {
        self.len * size_of::<A>()
    }

    fn map_window(&self, offset: usize) -> std::io::Result<Window> {
        let page = 4096;
        let bytes = WINDOW_BYTES
            .min(self.total_bytes() - offset)
            .next_multiple_of(page);
        // SAFETY: a fresh shared mapping of part of the map's value area (the kernel
        // refuses one beyond it); the kernel keeps the pages alive while mapped; unmapped
        // when the window drops.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.map.fd().as_fd().as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Window {
            offset,
            ptr: NonNull::new(ptr.cast()).expect("mmap returned a mapping"),
            bytes,
        })
    }

    /// Runs `f` on element `i`, mapping its window if needed; panics beyond the array.
    pub fn with<T>(&self, i: usize, f: impl FnOnce(&A) -> T) -> std::io::Result<T> {
        self.with_slice(i..i + 1, |s| f(&s[0]))
    }

    /// Runs `f` on each part of `range` that one window holds, in order: the part and
    /// the index of its first element.
    pub fn for_range(
        &self,
        range: std::ops::Range<usize>,
        mut f: impl FnMut(&[A], usize),
    ) -> std::io::Result<()> {
        let per_window = WINDOW_BYTES / size_of::<A>();
        let mut at = range.start;
        while at < range.end {
            let end = range.end.min((at / per_window + 1) * per_window);
            self.with_slice(at..end, |s| f(s, at))?;
            at = end;
        }
        Ok(())
    }

    /// Runs `f` on elements `range`, which one window holds.
    fn with_slice<T>(
        &self,
        range: std::ops::Range<usize>,
        f: impl FnOnce(&[A]) -> T,
    ) -> std::io::Result<T> {
        assert!(range.end <= self.len, "elements {range:?} of {}", self.len);
        let byte = range.start * size_of::<A>();
        let offset = byte - byte % WINDOW_BYTES;
        assert!(
            range.end * size_of::<A>() <= offset + WINDOW_BYTES,
            "{range:?} spans windows"
        );
        let mut windows = self.windows.lock().expect("windows lock");
        if windows.last().is_none_or(|w| w.offset != offset) {
            match windows.iter().position(|w| w.offset == offset) {
                Some(at) => {
                    let w = windows.remove(at);
                    windows.push(w);
                }
                None => {
                    if windows.len() == MAX_WINDOWS {
                        windows.remove(0);
                    }
                    windows.push(self.map_window(offset)?);
                }
            }
        }
        let w = windows.last().expect("just pushed");
        // SAFETY: inside the window (its offset is the range's window, and the range ends
        // within it), which stays mapped while the lock is held; elements are atomics,
        // aligned in the map.
        let slice = unsafe {
            let first = w.ptr.as_ptr().add(byte - offset).cast::<A>();
            std::slice::from_raw_parts(first, range.len())
        };
        Ok(f(slice))
    }

    /// Unmaps every window (an idle daemon holds none).
    pub fn release(&self) {
        self.windows.lock().expect("windows lock").clear();
    }

    /// Windows mapped now.
    pub fn mapped(&self) -> usize {
        self.windows.lock().expect("windows lock").len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
