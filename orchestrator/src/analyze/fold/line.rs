//! One line of `perf script` text: header tokens (pid, cpu, time, period, event) and
//! frame lines (`addr sym+off (dso)`), as bytes: symbols need not be UTF-8.

use memchr::memmem;

use super::FrameKind;

/// `cycles:u`, `cpu-clock:pppH` → `cycles`, `cpu-clock`; `sched:sched_switch` stays.
pub(super) fn normalize_event(ev: &[u8]) -> &[u8] {
    match memchr::memrchr(b':', ev) {
        Some(i) if i > 0 && ev[i + 1..].iter().all(|b| b"ukhGHpPSDIWe".contains(b)) => &ev[..i],
        _ => ev,
    }
}

pub(super) fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

pub(super) fn tokens(line: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return None;
        }
        let s = i;
        while i < line.len() && !line[i].is_ascii_whitespace() {
            i += 1;
        }
        Some((s, &line[s..i]))
    })
}

pub(super) fn is_pid(t: &[u8]) -> bool {
    let mut parts = t.split(|&b| b == b'/');
    let ok =
        |p: Option<&[u8]>| p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    let a = parts.next();
    match (ok(a), parts.next(), parts.next()) {
        (true, None, _) => true,
        (true, Some(b), None) => ok(Some(b)),
        _ => false,
    }
}

pub(super) fn is_cpu(t: &[u8]) -> bool {
    t.len() >= 3
        && t[0] == b'['
        && t[t.len() - 1] == b']'
        && t[1..t.len() - 1].iter().all(u8::is_ascii_digit)
}

pub(super) fn is_time(t: &[u8]) -> bool {
    let Some(body) = t.strip_suffix(b":") else {
        return false;
    };
    let mut dot = false;
    !body.is_empty()
        && body.iter().all(|&b| {
            if b == b'.' && !dot {
                dot = true;
                true
            } else {
                b.is_ascii_digit()
            }
        })
        && dot
}

pub(super) fn parse_u64(t: &[u8]) -> Option<u64> {
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// `ffffffff81000000 sym+0x1f (dso)` without leading blanks: is it a frame line?
pub(super) fn looks_like_frame(line: &[u8]) -> bool {
    let hex_len = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    hex_len >= 1 && line.get(hex_len) == Some(&b' ') && line.last() == Some(&b')')
}

/// One frame line read: the function's name, its kind, and the kernel module perf
/// placed it in (empty for vmlinux, user code and unknown objects).
pub(super) struct Frame<'a> {
    pub name: &'a [u8],
    pub kind: FrameKind,
    /// As printed: `nf_tables` from `[nf_tables]`, `cls_u32` from
    /// `/lib/modules/…/cls_u32.ko.xz` (dashes not yet made underscores).
    pub module: &'a [u8],
}

/// Splits `addr sym+off (dso)` into the function name, its kind and its module.
pub(super) fn parse_frame(line: &[u8]) -> Option<Frame<'_>> {
    let hex_len = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if hex_len == 0 {
        return None;
    }
    let rest = trim_start(&line[hex_len..]);
    if rest.len() == line.len() - hex_len && !rest.is_empty() {
        // No space after the address: not a frame.
        return None;
    }
    // The dso is the last parenthesised group; symbols may contain parentheses.
    let (sym, dso) = match rest.last() {
        Some(b')') => match memmem::rfind(rest, b" (") {
            Some(i) => (&rest[..i], &rest[i + 2..rest.len() - 1]),
            None if rest.first() == Some(&b'(') => (&rest[..0], &rest[1..rest.len() - 1]),
            None => (rest, &rest[..0]),
        },
        _ => (rest, &rest[..0]),
    };
    // An `[unknown]` object at a kernel address (x86-64/arm64 kernel space is the
    // top half: 16 hex digits from 0xffff…) is kernel code whose symbol perf lacked.
    let kernel_addr = hex_len == 16 && line.starts_with(b"ffff");
    // vmlinux first: most kernel frames are its, and they are in no module.
    let module = if dso.starts_with(b"[kernel") {
        &dso[..0]
    } else {
        module_name(dso, kernel_addr)
    };
    let kind = if dso.starts_with(b"[kernel")
        || !module.is_empty()
        || (dso == b"[unknown]" && kernel_addr)
        // Other bracketed objects at kernel addresses: ftrace and kprobe trampolines.
        || (kernel_addr && dso.starts_with(b"[") && dso.ends_with(b"]"))
        || dso.ends_with(b"vmlinux")
        || dso.starts_with(b"bpf_prog_")
        || dso.starts_with(b"[bpf")
        || memmem::find(dso, b"/vmlinux").is_some()
    {
        FrameKind::Kernel
    } else {
        FrameKind::User
    };
    let sym = strip_clone_suffix(strip_offset(sym));
    if sym.is_empty() || sym == b"[unknown]" {
        // Name unknown frames after their object, as inferno does.
        let base = match memchr::memrchr(b'/', dso) {
            Some(i) => &dso[i + 1..],
            None => dso,
        };
        let name: &[u8] = if base.is_empty() || base == b"[unknown]" {
            b"[unknown]"
        } else {
            // The caller interns this slice; bracketing happens in display.
            base
        };
        return Some(Frame { name, kind, module });
    }
    Some(Frame {
        name: sym,
        kind,
        module,
    })
}

/// The kernel module an object names: a module file (`…/sch_netem.ko`, `.ko.xz`,
/// `.ko.zst`, `.ko.gz`) or, at a kernel address, a bracketed module name perf found
/// no file for (`[nf_tables]`). Not modules: `[vsyscall]`, BPF programs, and the
/// ftrace/kprobe trampolines (`[__builtin__ftrace]`).
pub(super) fn module_name(dso: &[u8], kernel_addr: bool) -> &[u8] {
    // Suffix tests, not a substring search: this runs for every user frame too.
    for ext in [b".ko".as_slice(), b".ko.xz", b".ko.zst", b".ko.gz"] {
        if let Some(path) = dso.strip_suffix(ext) {
            let start = memchr::memrchr(b'/', path).map_or(0, |s| s + 1);
            return &path[start..];
        }
    }
    if !kernel_addr || dso.len() < 3 || dso[0] != b'[' || dso[dso.len() - 1] != b']' {
        return &dso[..0];
    }
    let inner = &dso[1..dso.len() - 1];
    let plain = inner
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let not_module = matches!(
        inner,
        b"unknown" | b"vsyscall" | b"vdso" | b"vectors" | b"bpf" | b"heap" | b"stack"
    ) || inner.starts_with(b"bpf_prog")
        || inner.starts_with(b"bpf_trampoline")
        || inner.starts_with(b"__builtin");
    if plain && !not_module {
        inner
    } else {
        &dso[..0]
    }
}

/// `tcp_ack+0x1f` → `tcp_ack`. Leaves `+` inside C++ names (`operator+`) alone.
pub(super) fn strip_offset(sym: &[u8]) -> &[u8] {
    if let Some(i) = memchr::memrchr(b'+', sym) {
        let off = &sym[i + 1..];
        if off.starts_with(b"0x") && off[2..].iter().all(u8::is_ascii_hexdigit) && i > 0 {
            return &sym[..i];
        }
    }
    sym
}

/// `handle_softirqs.constprop.0` → `handle_softirqs`: the compiler's clones of one
/// function (constant propagation, IPA-SRA, split cold parts, LTO privatisation) get
/// different suffixes in different builds; one name per source function lets two
/// kernels be compared function by function.
pub(super) fn strip_clone_suffix(sym: &[u8]) -> &[u8] {
    const MARKS: &[&[u8]] = &[
        b".constprop.",
        b".isra.",
        b".part.",
        b".cold",
        b".llvm.",
        b".lto_priv.",
    ];
    // Most names have no dot: one memchr and out (this runs for every frame).
    let Some(first_dot) = memchr::memchr(b'.', sym) else {
        return sym;
    };
    if first_dot == 0 || sym.first() == Some(&b'[') || sym.contains(&b' ') {
        return sym;
    }
    let sym_tail = &sym[first_dot..];
    let cut = MARKS
        .iter()
        .filter_map(|m| memchr::memmem::find(sym_tail, m))
        .min();
    match cut {
        Some(i) => &sym[..first_dot + i],
        None => sym,
    }
}
