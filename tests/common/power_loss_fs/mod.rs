//! A power-loss filesystem for the durability tests (the idea of LazyFS, which the package
//! registries do not carry): a FUSE filesystem, served by the test process itself, that keeps
//! what programs write in memory and makes it durable only on `fsync`/`fdatasync` of the file
//! (its bytes) or of a folder (its names). [`PowerLossFs::power_cut`] throws away everything not
//! made durable, as a power cut or a host crash would, and mounts the survivors again at the same
//! place, as after a reboot. What exactly is kept and lost, and what is not modelled, is in
//! [`tree`]; the kernel's side is in [`filesystem`].
//!
//! Mounting needs root and `/dev/fuse` (no libfuse: the `fuser` crate mounts directly); tests
//! mount it inside a mount namespace of their own (`common::in_own_mounts`), so a test that dies
//! leaves no mount behind. Contents live in the test's memory: fine for a data folder of a few
//! hundred megabytes.

pub mod filesystem;
pub mod tree;

use filesystem::PowerLossFilesystem;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tree::Tree;

/// The mounted filesystem; unmounted when dropped.
pub struct PowerLossFs {
    tree: Arc<Mutex<Tree>>,
    mountpoint: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

fn mount(tree: &Arc<Mutex<Tree>>, at: &Path) -> std::io::Result<fuser::BackgroundSession> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("radassist-power-loss".into()),
        fuser::MountOption::Subtype("power-loss".into()),
        fuser::MountOption::RW,
    ];
    fuser::spawn_mount(PowerLossFilesystem { tree: tree.clone() }, at, &config)
}

impl PowerLossFs {
    /// An empty power-loss filesystem mounted at `at` (an existing, empty folder).
    pub fn mount(at: &Path) -> std::io::Result<PowerLossFs> {
        let tree = Arc::new(Mutex::new(Tree::new()));
        let session = mount(&tree, at)?;
        Ok(PowerLossFs {
            tree,
            mountpoint: at.to_path_buf(),
            session: Some(session),
        })
    }

    /// The power cut and the reboot: unmounts (every process using the mount must be gone, as
    /// they would be), drops what was never made durable, and mounts what survived.
    pub fn power_cut(&mut self) -> std::io::Result<()> {
        self.unmount()?;
        self.tree().power_cut();
        self.session = Some(mount(&self.tree, &self.mountpoint)?);
        Ok(())
    }

    /// Everything durable as it stands (a checkpoint: what `sync(2)` would do, which FUSE does
    /// not pass on).
    pub fn sync_everything(&self) {
        self.tree().sync_everything();
    }

    /// How many syncs and cuts it has seen.
    pub fn counts(&self) -> tree::Counts {
        self.tree().counts
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unmount(&mut self) -> std::io::Result<()> {
        match self.session.take() {
            Some(session) => session.umount_and_join().map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "unmounting {} (is a process still using it?): {e}",
                        self.mountpoint.display()
                    ),
                )
            }),
            None => Ok(()),
        }
    }
}

impl Drop for PowerLossFs {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("{e}");
        }
    }
}
