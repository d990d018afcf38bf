//! The sizes of one core's data caches, read from the CPU once per process, for the
//! kernels whose blocking depends on them.
//!
//! A block that fits a 48 KB L1 overflows a 32 KB one, and weights that stay in a 2 MB L2
//! stream from L3 past 512 KB: a size fixed for one machine is wrong on another by as much
//! as these caches differ (Intel's server cores and AMD's Zen generations span 32 to 48 KB
//! of L1 data and 512 KB to 2 MB of L2 per core). Where the CPU does not say, the sizes
//! are those of a mid-sized core (32 KB, 1 MB).

use std::sync::OnceLock;

/// One core's private data caches, in bytes.
///
/// ```
/// let caches = tapegrad_kernels::cache::caches();
/// assert!(caches.l1_data >= 16 << 10 && caches.l2 >= caches.l1_data);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caches {
    /// Level 1 data cache.
    pub l1_data: usize,
    /// Level 2 cache (unified).
    pub l2: usize,
}

/// When the CPU does not describe its caches.
const FALLBACK: Caches = Caches { l1_data: 32 << 10, l2: 1 << 20 };

/// This CPU's caches (the first core's, as the CPU reports them; every core of the CPUs
/// the kernels tune for has the same), clamped to sizes real cores have so that a
/// virtual machine's odd report cannot make a block empty or huge.
///
/// ```
/// use tapegrad_kernels::cache::caches;
/// assert_eq!(caches(), caches()); // read once per process
/// ```
pub fn caches() -> Caches {
    static CACHES: OnceLock<Caches> = OnceLock::new();
    *CACHES.get_or_init(|| within_real_sizes(read().unwrap_or(FALLBACK)))
}

/// `reported` clamped to the sizes real cores have: L1 data 16 to 128 KB, L2 256 KB to
/// 8 MB.
fn within_real_sizes(reported: Caches) -> Caches {
    Caches {
        l1_data: reported.l1_data.clamp(16 << 10, 128 << 10),
        l2: reported.l2.clamp(256 << 10, 8 << 20),
    }
}

/// The caches as CPUID describes them: Intel's leaf 4, or on AMD (where leaf 4 is empty)
/// leaf 0x8000001D, which has the same layout. Each subleaf describes one cache: type in
/// EAX bits 0-4 (1 data, 3 unified, 0 no more caches), level in bits 5-7; ways, partitions
/// and line size in EBX, sets in ECX, each stored minus one.
#[cfg(target_arch = "x86_64")]
fn read() -> Option<Caches> {
    use std::arch::x86_64::__cpuid_count;
    let describe = |leaf: u32| -> Option<Caches> {
        let (mut l1_data, mut l2) = (None, None);
        for subleaf in 0..16 {
            let r = __cpuid_count(leaf, subleaf);
            let kind = r.eax & 0x1f;
            if kind == 0 {
                break;
            }
            let level = (r.eax >> 5) & 0x7;
            let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
            let partitions = ((r.ebx >> 12) & 0x3ff) as usize + 1;
            let line = (r.ebx & 0xfff) as usize + 1;
            let sets = r.ecx as usize + 1;
            let size = ways * partitions * line * sets;
            match (level, kind) {
                (1, 1) => l1_data = Some(size),
                (2, 3) | (2, 1) => l2 = Some(size),
                _ => {}
            }
        }
        Some(Caches { l1_data: l1_data?, l2: l2? })
    };
    let max_leaf = __cpuid_count(0, 0).eax;
    let max_extended = __cpuid_count(0x8000_0000, 0).eax;
    (max_leaf >= 4)
        .then(|| describe(4))
        .flatten()
        .or_else(|| (max_extended >= 0x8000_001d).then(|| describe(0x8000_001d)).flatten())
}

#[cfg(not(target_arch = "x86_64"))]
fn read() -> Option<Caches> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_reports_are_held_to_real_sizes() {
        let tiny = Caches { l1_data: 1, l2: 0 };
        assert_eq!(within_real_sizes(tiny), Caches { l1_data: 16 << 10, l2: 256 << 10 });
        let huge = Caches { l1_data: 1 << 30, l2: 1 << 40 };
        assert_eq!(within_real_sizes(huge), Caches { l1_data: 128 << 10, l2: 8 << 20 });
        // Real sizes pass unchanged, this machine's among them.
        let xeon = Caches { l1_data: 48 << 10, l2: 2 << 20 };
        assert_eq!(within_real_sizes(xeon), xeon);
        if let Some(read) = read() {
            assert_eq!(caches(), within_real_sizes(read));
        }
    }

    /// Where Linux lists the caches too, CPUID says the same.
    #[test]
    fn agrees_with_what_linux_lists() {
        let Ok(dirs) = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache") else { return };
        let mut listed = (None, None);
        for dir in dirs.flatten().map(|d| d.path()) {
            let field = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
            let (Some(level), Some(kind), Some(size)) =
                (field("level"), field("type"), field("size"))
            else {
                continue;
            };
            let Some(kib) = size.trim().strip_suffix('K').and_then(|k| k.parse::<usize>().ok())
            else {
                continue;
            };
            match (level.trim(), kind.trim()) {
                ("1", "Data") => listed.0 = Some(kib << 10),
                ("2", "Unified" | "Data") => listed.1 = Some(kib << 10),
                _ => {}
            }
        }
        if let (Some(l1_data), Some(l2), Some(read)) = (listed.0, listed.1, read()) {
            assert_eq!(read, Caches { l1_data, l2 });
        }
    }
}
