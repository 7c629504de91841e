//! The brain's k = 3 disjoint paths from one router to all 999 others on the 1,000-router
//! random geometric mesh, beside the naive way (a fresh flow network and k searches per
//! destination) in the same run. (`cargo bench -p x0-brain --bench disjoint` has the
//! criterion version with 50 and 200 routers too.)

use std::time::Instant;

use anyhow::Result;
use x0_brain::{
    paths::disjoint::{Network, from_source},
    paths::testgraph::random_geometric,
};

use crate::report::{Row, Table};

fn time_ms(f: impl Fn()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

pub fn run(quick: bool) -> Result<Table> {
    let g = random_geometric(1000, 5.0, 42);
    let (reps, naive_reps) = if quick { (10, 1) } else { (30, 3) };
    eprintln!("  paths: 1,000 routers, k = 3");
    std::hint::black_box(from_source(&g, 0, 3)); // warm-up
    let shared: Vec<f64> = (0..reps)
        .map(|_| time_ms(|| drop(std::hint::black_box(from_source(&g, 0, 3)))))
        .collect();
    let naive: Vec<f64> = (0..naive_reps)
        .map(|_| {
            time_ms(|| {
                for d in 0..g.n {
                    std::hint::black_box(Network::new(&g, 0, 3).paths_to(d));
                }
            })
        })
        .collect();
    let median = Row::new("", shared.clone()).median();
    Ok(Table {
        id: "brain-paths".into(),
        title: "Brain: k = 3 disjoint paths to every router of 1,000".into(),
        command: format!(
            "cargo build --release -p x0-bench && ./target/release/x0-bench paths{}",
            if quick { " --quick" } else { "" }
        ),
        about: "One source (router 0), the 999 others as destinations, k = 3, on a random \
                geometric mesh of 1,000 routers (average degree about 5, seed 42). \"naive\" \
                builds a fresh flow network and runs the k searches from scratch for each \
                destination; the brain's way cuts the mesh into blocks at its cut routers and \
                bridges, searches each block once from its entry with one shortest-path tree \
                and only what each destination touched reset, and joins the paths (DESIGN.md)."
            .into(),
        unit: "ms for all destinations".into(),
        higher_is_better: false,
        rows: vec![
            Row::new("naive (baseline)", naive).baseline(),
            Row::new("x0-brain (blocks, shared tree, radix heap)", shared),
        ],
        goal: "under 20 ms at 1,000 routers".into(),
        verdict: format!(
            "{median:.1} ms: {}",
            if median < 20.0 { "met" } else { "not met" }
        ),
        notes: vec![],
    })
}
