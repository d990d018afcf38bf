//! docs/OPS.md is generated from the op registry that the gradient tests run, so the table
//! cannot drift from the tests. This test fails when the file is stale; regenerate it with
//! `UPDATE_OPS_MD=1 cargo test -p tapegrad-ops --test ops_table`.

mod common;

fn table() -> String {
    let mut s = String::from(
        "# Operations\n\n\
         Generated from the op registry in `crates/ops/tests/common/mod.rs` by\n\
         `UPDATE_OPS_MD=1 cargo test -p tapegrad-ops --test ops_table`; do not edit by hand.\n\n\
         Every op runs on float32 and float64 tensors (index arguments are int64). Its gradients\n\
         are checked against central differences in float64 over random shapes and values\n\
         (`cargo test -p tapegrad-ops --test op_gradients`, 256 cases per op). Its forward-mode\n\
         rule (the tangent `J v` of dual inputs) is checked against central differences along\n\
         `v` and against reverse mode, and, where second derivatives exist, the tangent of its\n\
         gradient (forward-over-reverse) against reverse-over-reverse\n\
         (`cargo test -p tapegrad-ops --test forward_mode`, 64 cases per op).\n\n\
         | tapegrad | PyTorch | dtypes | first derivative checked | second derivative checked \
         | forward mode checked |\n\
         |---|---|---|---|---|---|\n",
    );
    for op in common::registry() {
        let second = if op.second_order { "yes" } else { "no (not twice differentiable)" };
        let forward = if op.second_order { "yes, and over reverse" } else { "yes" };
        s.push_str(&format!(
            "| `{}` | `{}` | f32, f64 | yes | {second} | {forward} |\n",
            op.name, op.torch
        ));
    }
    s
}

#[test]
fn ops_md_matches_the_registry() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/OPS.md");
    let expected = table();
    if std::env::var_os("UPDATE_OPS_MD").is_some() {
        std::fs::write(path, &expected).expect("write docs/OPS.md");
        return;
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/OPS.md is out of date with the op registry; run\n  UPDATE_OPS_MD=1 cargo test -p \
        tapegrad-ops --test ops_table"
    );
}
