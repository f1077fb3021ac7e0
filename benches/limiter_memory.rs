//! Memory of a rate-limit table: resident bytes per key after a million distinct client
//! addresses each sent one request, and after the sweep once they have gone idle.
//! `cargo bench --bench limiter_memory` (figures in docs/src/access.md).

use switchyard::route::access::limit::{Gcra, Table, ip_key};

fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let table = Table::default();
    // 50/s, burst 10: each key stays in the table for 220 ms after its request.
    let gcra = Gcra {
        interval: 20_000_000,
        window: 220_000_000,
    };
    let before = resident();
    let now = 1_000_000_000;
    for i in 0..1_000_000u32 {
        let ip = std::net::IpAddr::V6(std::net::Ipv6Addr::from(u128::from(i) << 64));
        assert!(table.admit(&gcra, ip_key(ip, 32, 64), now).admitted);
    }
    let full = resident();
    println!("keys: {}", table.len());
    println!(
        "resident: +{:.1} MiB, {} bytes per key",
        (full - before) as f64 / (1 << 20) as f64,
        (full - before) / 1_000_000
    );
    let left = table.sweep(now + 1_000_000_000);
    println!(
        "after the sweep: {left} keys, resident +{:.1} MiB",
        (resident().saturating_sub(before)) as f64 / (1 << 20) as f64
    );
}
