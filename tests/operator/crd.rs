//! `crds/botfleet.yaml` is exactly what `sitg-bot crd` prints.

use std::process::Command;

const CRD_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/botfleet.yaml");

#[test]
fn crd_file_matches_the_rust_types() {
    let on_disk = std::fs::read_to_string(CRD_PATH).expect("crds/botfleet.yaml readable");
    let generated = sitg_bot::operator::crd_yaml().expect("CRD generates");
    assert!(
        on_disk == generated,
        "crds/botfleet.yaml is out of date: regenerate it with \
         `cargo run -p sitg-bot -- crd > crds/botfleet.yaml`"
    );
}

#[test]
fn crd_subcommand_prints_the_file() {
    let output = Command::new(env!("CARGO_BIN_EXE_sitg-bot"))
        .arg("crd")
        .output()
        .expect("sitg-bot crd runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let on_disk = std::fs::read_to_string(CRD_PATH).expect("crds/botfleet.yaml readable");
    assert_eq!(String::from_utf8_lossy(&output.stdout), on_disk);
}
