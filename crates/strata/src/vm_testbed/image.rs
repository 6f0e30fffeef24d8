//! The guest image: built by `scripts/testbed-image` (embedded in the
//! binary, so an installed `strata` needs no source tree) and cached.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SCRIPT: &str = include_str!("../../../../scripts/testbed-image");

/// A bootable guest: kernel and initramfs.
#[derive(Debug, Clone)]
pub struct Image {
    /// The PVH vmlinux (or a bzImage when the kernel has no PVH entry).
    pub kernel: PathBuf,
    /// The initramfs carrying busybox, strata and the init script.
    pub initrd: PathBuf,
}

/// Builds the image for `strata` under `cache`, or finds it there.
pub fn build(strata: &Path, cache: &Path) -> anyhow::Result<Image> {
    // Run from a file in the cache: the script hashes itself into the cache key.
    std::fs::create_dir_all(cache)
        .with_context(|| format!("cannot create the image cache {}", cache.display()))?;
    let script = cache.join("testbed-image.sh");
    std::fs::write(&script, SCRIPT)
        .with_context(|| format!("cannot write {}", script.display()))?;
    let child = Command::new("bash")
        .arg(&script)
        .arg(strata)
        .arg(cache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run bash to build the guest image")?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "building the guest image failed ({}); it needs root, apt (linux-image-amd64), \
             busybox-static and cpio: run scripts/install-deps",
            out.status
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(PathBuf::from)
    };
    match (field("KERNEL="), field("INITRD=")) {
        (Some(kernel), Some(initrd)) => Ok(Image { kernel, initrd }),
        _ => bail!("the image builder printed no KERNEL=/INITRD= lines: {text}"),
    }
}
