//! One line in the output of every `cargo test` saying whether the tests that need
//! external tools ran, and how to turn them on. A test binary without libtest's harness,
//! so cargo shows its output instead of capturing it.

fn main() {
    if cfg!(feature = "external-tests") {
        println!(
            "external tests on: tests/operator on the control plane, tests/deploy \
             (helm, hadolint, systemd-analyze, PostgreSQL)"
        );
    } else {
        eprintln!(
            "NOTE: the control-plane/helm/PostgreSQL/hadolint/systemd-analyze tests are off: \
             scripts/test.sh runs them (cargo test --workspace --features external-tests)"
        );
    }
}
