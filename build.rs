//! Records the source revision for `sitg_bot_build_info{revision}`:
//! `SITG_BUILD_REVISION` when the build sets it (the image build passes it in, since the
//! image's build context has no `.git`), else `git rev-parse HEAD` of the checkout, else
//! `unknown`.
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SITG_BUILD_REVISION");
    let revision = std::env::var("SITG_BUILD_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            // A new commit moves the branch's ref, not HEAD: watch both.
            for path in [
                Some("HEAD".to_owned()),
                git(&["symbolic-ref", "-q", "HEAD"]),
            ]
            .into_iter()
            .flatten()
            {
                if let Some(file) =
                    git(&["rev-parse", "--path-format=absolute", "--git-path", &path])
                {
                    println!("cargo:rerun-if-changed={file}");
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SITG_BUILD_REVISION={revision}");
}
