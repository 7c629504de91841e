//! k = 3 disjoint paths from one router to every other on random geometric graphs of
//! 50, 200 and 1000 routers (average degree about 5), beside the naive way in the same run
//! (a fresh network and k searches per destination) and one network over the whole mesh
//! without the split into blocks. Goal: under 20 ms at 1000.
//! `cargo bench -p x0-brain --bench disjoint`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use x0_brain::{
    paths::disjoint::{Network, from_source},
    paths::testgraph::random_geometric,
};

fn all_destinations(c: &mut Criterion) {
    let mut group = c.benchmark_group("k3_disjoint_all_destinations");
    group.sample_size(10);
    for n in [50, 200, 1000] {
        let g = random_geometric(n, 5.0, 42);
        group.bench_with_input(BenchmarkId::new("shared", n), &g, |b, g| {
            b.iter(|| from_source(g, 0, 3))
        });
        group.bench_with_input(BenchmarkId::new("whole_mesh", n), &g, |b, g| {
            b.iter(|| {
                let mut net = Network::new(g, 0, 3);
                (0..g.n).map(|d| net.paths_to(d)).collect::<Vec<_>>()
            })
        });
        group.bench_with_input(BenchmarkId::new("naive", n), &g, |b, g| {
            b.iter(|| {
                (0..g.n)
                    .map(|d| Network::new(g, 0, 3).paths_to(d))
                    .collect::<Vec<_>>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, all_destinations);
criterion_main!(benches);
