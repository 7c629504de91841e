//! The kernel memory our BPF maps are charged (memlock), read from this process's open
//! map descriptors: the maps the fast path uses, whether created or adopted from pins.

use std::collections::BTreeMap;

/// Bytes charged per map name (maps sharing a name are added up).
pub fn map_memory() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (id, bytes) in memlock_by_map(std::path::Path::new("/proc/self/fdinfo")) {
        let name = aya::maps::MapInfo::from_id(id)
            .ok()
            .and_then(|m| m.name_as_str().map(str::to_string))
            .unwrap_or_else(|| "unnamed".to_string());
        *out.entry(name).or_insert(0) += bytes;
    }
    out
}

/// Bytes charged per map id, each map once, for the BPF map descriptors a process holds
/// (`fdinfo`: /proc/PID/fdinfo; a descriptor closed meanwhile is skipped).
pub fn memlock_by_map(fdinfo: &std::path::Path) -> BTreeMap<u32, u64> {
    let mut by_id = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(fdinfo) else {
        return by_id;
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        if let Some((id, bytes)) = parse_fdinfo(&text) {
            by_id.insert(id, bytes);
        }
    }
    by_id
}

/// (map id, memlock bytes) of a map descriptor's fdinfo; None for other descriptors.
fn parse_fdinfo(text: &str) -> Option<(u32, u64)> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    let id = field("map_id:")?.parse().ok()?;
    let bytes = field("memlock:")?.parse().ok()?;
    Some((id, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_map_descriptors_count() {
        let map = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t2\nkey_size:\t4\nvalue_size:\t8\nmax_entries:\t64\nmap_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t4096\nmap_id:\t17\nfrozen:\t0\n";
        assert_eq!(parse_fdinfo(map), Some((17, 4096)));
        let prog = "pos:\t0\nflags:\t02000002\nprog_type:\t6\nprog_jited:\t1\nprog_tag:\tabc\nmemlock:\t4096\nprog_id:\t30\n";
        assert_eq!(parse_fdinfo(prog), None);
    }
}
