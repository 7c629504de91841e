//! A small AF_XDP socket (copy mode) for BFD: the XDP program redirects BFD control
//! packets addressed to the router into it (XSKMAP), and BFD packets are sent through it,
//! so neither direction waits on the kernel's network stack when the host is busy.
//!
//! Written here on `libc` because the AF_XDP crates either build C libbpf/libxdp
//! (afxdp, xsk-rs) or carry a copyleft licence (xdpilone); see docs/DESIGN.md.

use std::{
    io,
    mem::{size_of, zeroed},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    ptr,
    sync::atomic::{AtomicU32, Ordering},
};

/// Frames in the UMEM, their size, and the ring sizes (BFD needs very few).
const FRAMES: u32 = 64;
const FRAME_SIZE: u32 = 2048;
const RING: u32 = 32;

struct Ring {
    producer: *mut AtomicU32,
    consumer: *mut AtomicU32,
    flags: *mut AtomicU32,
    descs: *mut u8,
    map: *mut libc::c_void,
    map_len: usize,
}

impl Ring {
    /// Maps one of the socket's rings.
    unsafe fn map(
        fd: RawFd,
        off: &libc::xdp_ring_offset,
        desc_size: usize,
        pgoff: u64,
    ) -> io::Result<Ring> {
        let map_len = off.desc as usize + RING as usize * desc_size;
        let map = unsafe {
            libc::mmap(
                ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = map as *mut u8;
        Ok(Ring {
            producer: unsafe { base.add(off.producer as usize) } as *mut AtomicU32,
            consumer: unsafe { base.add(off.consumer as usize) } as *mut AtomicU32,
            flags: unsafe { base.add(off.flags as usize) } as *mut AtomicU32,
            descs: unsafe { base.add(off.desc as usize) },
            map,
            map_len,
        })
    }
    fn producer(&self) -> &AtomicU32 {
        unsafe { &*self.producer }
    }
    fn consumer(&self) -> &AtomicU32 {
        unsafe { &*self.consumer }
    }
    fn needs_wakeup(&self) -> bool {
        unsafe { &*self.flags }.load(Ordering::Acquire) & libc::XDP_RING_NEED_WAKEUP != 0
    }
    unsafe fn desc<T>(&self, index: u32) -> *mut T {
        unsafe { (self.descs as *mut T).add((index & (RING - 1)) as usize) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// One AF_XDP socket bound to one queue of one interface.
pub struct XskSocket {
    fd: OwnedFd,
    umem: *mut u8,
    rx: Ring,
    tx: Ring,
    fill: Ring,
    completion: Ring,
    /// Frames free for transmission.
    free: Vec<u64>,
    pub ifindex: u32,
    pub queue: u32,
}

// The rings and the UMEM are only touched by the thread that owns the socket.
unsafe impl Send for XskSocket {}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            value as *const T as *const libc::c_void,
            size_of::<T>() as u32,
        )
    })
}

impl XskSocket {
    /// Creates the socket, its UMEM and rings, and binds it in copy mode (an XDP program
    /// must be attached to the interface).
    pub fn bind(ifindex: u32, queue: u32) -> io::Result<XskSocket> {
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem_len = (FRAMES * FRAME_SIZE) as usize;
        let umem = unsafe {
            libc::mmap(
                ptr::null_mut(),
                umem_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if umem == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // From here the UMEM is freed by Drop, through a partially built socket.
        let reg = libc::xdp_umem_reg {
            addr: umem as u64,
            len: umem_len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        let fail = |e| {
            unsafe { libc::munmap(umem, umem_len) };
            e
        };
        setsockopt(raw, libc::XDP_UMEM_REG, &reg).map_err(fail)?;
        for name in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
            libc::XDP_TX_RING,
        ] {
            setsockopt(raw, name, &RING).map_err(fail)?;
        }
        let mut off: libc::xdp_mmap_offsets = unsafe { zeroed() };
        let mut len = size_of::<libc::xdp_mmap_offsets>() as u32;
        check(unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                &mut off as *mut _ as *mut libc::c_void,
                &mut len,
            )
        })
        .map_err(fail)?;
        let rings = unsafe {
            (|| -> io::Result<(Ring, Ring, Ring, Ring)> {
                Ok((
                    Ring::map(
                        raw,
                        &off.rx,
                        size_of::<libc::xdp_desc>(),
                        libc::XDP_PGOFF_RX_RING as u64,
                    )?,
                    Ring::map(
                        raw,
                        &off.tx,
                        size_of::<libc::xdp_desc>(),
                        libc::XDP_PGOFF_TX_RING as u32 as u64,
                    )?,
                    Ring::map(
                        raw,
                        &off.fr,
                        size_of::<u64>(),
                        libc::XDP_UMEM_PGOFF_FILL_RING,
                    )?,
                    Ring::map(
                        raw,
                        &off.cr,
                        size_of::<u64>(),
                        libc::XDP_UMEM_PGOFF_COMPLETION_RING,
                    )?,
                ))
            })()
        }
        .map_err(fail)?;
        let (rx, tx, fill, completion) = rings;
        let mut sock = XskSocket {
            fd,
            umem: umem as *mut u8,
            rx,
            tx,
            fill,
            completion,
            free: Vec::new(),
            ifindex,
            queue,
        };
        // Half the frames wait in the fill ring for received packets, half are for sending.
        let fill_frames: Vec<u64> = (0..RING).map(|i| (i * FRAME_SIZE) as u64).collect();
        sock.free = (RING..FRAMES).map(|i| (i * FRAME_SIZE) as u64).collect();
        sock.refill(&fill_frames);
        let mut sa: libc::sockaddr_xdp = unsafe { zeroed() };
        sa.sxdp_family = libc::AF_XDP as u16;
        sa.sxdp_flags = libc::XDP_COPY | libc::XDP_USE_NEED_WAKEUP;
        sa.sxdp_ifindex = ifindex;
        sa.sxdp_queue_id = queue;
        check(unsafe {
            libc::bind(
                raw,
                &sa as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_xdp>() as u32,
            )
        })?;
        Ok(sock)
    }

    fn refill(&mut self, addrs: &[u64]) {
        let prod = self.fill.producer().load(Ordering::Relaxed);
        for (i, a) in addrs.iter().enumerate() {
            unsafe { *self.fill.desc::<u64>(prod + i as u32) = *a };
        }
        self.fill
            .producer()
            .store(prod + addrs.len() as u32, Ordering::Release);
    }

    /// Takes every received frame, hands each to `f`, and returns the frames to the
    /// fill ring.
    pub fn receive(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let prod = self.rx.producer().load(Ordering::Acquire);
        let mut cons = self.rx.consumer().load(Ordering::Relaxed);
        let mut done = Vec::new();
        while cons != prod {
            let d = unsafe { *self.rx.desc::<libc::xdp_desc>(cons) };
            let frame = unsafe {
                std::slice::from_raw_parts(self.umem.add(d.addr as usize), d.len as usize)
            };
            f(frame);
            done.push(d.addr & !(FRAME_SIZE as u64 - 1));
            cons += 1;
        }
        self.rx.consumer().store(cons, Ordering::Release);
        self.refill(&done);
        done.len()
    }

    /// Queues `frame` for transmission and kicks the kernel if it asks to be woken.
    pub fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.reclaim();
        if frame.len() > FRAME_SIZE as usize {
            return Err(io::Error::other("frame larger than a UMEM frame"));
        }
        let addr = self
            .free
            .pop()
            .ok_or_else(|| io::Error::other("no free AF_XDP frame"))?;
        unsafe {
            ptr::copy_nonoverlapping(frame.as_ptr(), self.umem.add(addr as usize), frame.len())
        };
        let prod = self.tx.producer().load(Ordering::Relaxed);
        if prod.wrapping_sub(self.tx.consumer().load(Ordering::Acquire)) >= RING {
            self.free.push(addr);
            return Err(io::Error::other("AF_XDP tx ring full"));
        }
        unsafe {
            *self.tx.desc::<libc::xdp_desc>(prod) = libc::xdp_desc {
                addr,
                len: frame.len() as u32,
                options: 0,
            }
        };
        self.tx.producer().store(prod + 1, Ordering::Release);
        if self.tx.needs_wakeup() {
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    ptr::null(),
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS)
                ) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Frames the kernel finished sending become free again.
    fn reclaim(&mut self) {
        let prod = self.completion.producer().load(Ordering::Acquire);
        let mut cons = self.completion.consumer().load(Ordering::Relaxed);
        while cons != prod {
            self.free
                .push(unsafe { *self.completion.desc::<u64>(cons) });
            cons += 1;
        }
        self.completion.consumer().store(cons, Ordering::Release);
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for XskSocket {
    fn drop(&mut self) {
        unsafe {
            libc::munmap(
                self.umem as *mut libc::c_void,
                (FRAMES * FRAME_SIZE) as usize,
            )
        };
    }
}
