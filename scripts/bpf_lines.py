#!/usr/bin/env python3
"""Maps `perf script` samples inside BPF programs to the programs' source lines.

Debian's bpftool is built without libbfd, so it cannot show JIT code; the kernel still
hands out each program's jited line info (JIT address -> BTF line record) through
BPF_OBJ_GET_INFO_BY_FD, which is all a per-line profile needs.

  bpf_lines.py dump OUT.json PROG_ID...   while the programs are loaded
  bpf_lines.py map OUT.json PERF_SCRIPT   afterwards

Only samples taken inside BPF_PROG_TEST_RUN count. A sample in a kernel function the
program called (a map lookup, a helper) is shown as "[function] from <line>".
"""
import bisect
import collections
import ctypes
import json
import os
import struct
import sys

SYS_BPF = 321  # x86_64
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_GET_FD_BY_ID = 13
BPF_BTF_GET_FD_BY_ID = 19
libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    r = libc.syscall(SYS_BPF, cmd, buf, len(attr))
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return r


def info(fd, size, template=None):
    buf = ctypes.create_string_buffer(size)
    if template:
        ctypes.memmove(buf, bytes(template), len(template))
    bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, size, ctypes.addressof(buf)) + bytes(112))
    return bytearray(buf.raw)


def prog_lines(prog_id):
    """[(jit address, "file:line: source")] of one program (struct bpf_prog_info offsets)."""
    fd = bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("<I", prog_id) + bytes(124))
    r = info(fd, 256)
    btf_id = struct.unpack_from("<I", r, 128)[0]
    n_lines = struct.unpack_from("<I", r, 148)[0]
    n_jited = struct.unpack_from("<I", r, 168)[0]
    line_size, jited_size = struct.unpack_from("<II", r, 172)
    lines = ctypes.create_string_buffer(n_lines * line_size)
    jited = ctypes.create_string_buffer(n_jited * jited_size)
    t = bytearray(256)
    struct.pack_into("<I", t, 148, n_lines)
    struct.pack_into("<Q", t, 152, ctypes.addressof(lines))
    struct.pack_into("<Q", t, 160, ctypes.addressof(jited))
    struct.pack_into("<I", t, 168, n_jited)
    struct.pack_into("<II", t, 172, line_size, jited_size)
    info(fd, 256, t)
    # The line records name their file and source text by offsets into the BTF strings.
    btf_fd = bpf(BPF_BTF_GET_FD_BY_ID, struct.pack("<I", btf_id) + bytes(124))
    size = struct.unpack_from("<I", info(btf_fd, 64), 8)[0]
    raw = ctypes.create_string_buffer(size)
    t = bytearray(64)
    struct.pack_into("<QI", t, 0, ctypes.addressof(raw), size)
    info(btf_fd, 64, t)
    raw = raw.raw
    hdr_len, _, _, str_off, str_len = struct.unpack_from("<IIIII", raw, 4)
    strings = raw[hdr_len + str_off : hdr_len + str_off + str_len]

    def text(off):
        return strings[off : strings.index(b"\0", off)].decode(errors="replace")

    out = []
    for i in range(n_lines):
        _, file_off, line_off, line_col = struct.unpack_from("<IIII", lines.raw, i * line_size)
        addr = struct.unpack_from("<Q", jited.raw, i * jited_size)[0]
        where = f"{os.path.basename(text(file_off))}:{line_col >> 10}"
        out.append((addr, f"{where}: {text(line_off).strip()[:90]}"))
    return out


def dump(path, ids):
    table = [row for i in ids for row in prog_lines(int(i))]
    ksyms = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, _, name = line.split()[:3]
            if name.startswith("bpf_prog_"):
                ksyms[name] = int(addr, 16)
    with open(path, "w") as f:
        json.dump([table, ksyms], f)


def report(path, perf_script):
    with open(path) as f:
        table, ksyms = json.load(f)
    table.sort()
    addrs = [a for a, _ in table]
    counts = collections.Counter()
    total = 0
    with open(perf_script) as f:
        samples = f.read().split("\n\n")
    for sample in samples:
        frames = [l.strip() for l in sample.strip().split("\n")[1:] if l.strip()]
        if not any("bpf_test_run" in fr for fr in frames):
            continue
        total += 1
        leaf = frames[0].split()[1].partition("+")[0]
        for fr in frames:
            name, _, off = fr.split()[1].partition("+")
            if name in ksyms and off:
                # -1: a return address points past its call instruction.
                i = bisect.bisect_right(addrs, ksyms[name] + int(off, 16) - 1) - 1
                where = table[i][1] if i >= 0 else name
                counts[where if leaf in ksyms else f"[{leaf}] from {where}"] += 1
                break
        else:
            counts[f"[{leaf}] (test-run harness)"] += 1
    print(f"{total} samples inside BPF_PROG_TEST_RUN")
    for where, n in counts.most_common(40):
        print(f"{n:6d} {100 * n / total:5.1f}%  {where}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "dump":
        dump(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 4 and sys.argv[1] == "map":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
