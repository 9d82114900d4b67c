//! The process around the resolver: refusing unsafe file permissions before start, and
//! dropping root once every socket is bound.
//!
//! Order in `rampart run`: load and check the config → refuse world-writable config or state
//! folders → bind everything (as root if port 53 needs it) → hand the state folder to the
//! configured user → switch user and group for good. A failure at any step stops the start
//! with one sentence naming the path or the user.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use nix::unistd::{Gid, Group, Uid, User};
use tracing::info;

/// Refuse to run from a config file, config folder or state folder that every local user may
/// write: anyone could then change what Rampart blocks, or plant files it will load.
pub fn refuse_world_writable(config_file: &Path, state_dir: &Path) -> anyhow::Result<()> {
    let folder = match config_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let candidates = [
        (config_file.to_path_buf(), "config file"),
        (folder, "config folder"),
        (state_dir.to_path_buf(), "state folder (state.dir)"),
    ];
    for (path, what) in candidates {
        // A state folder that does not exist yet is created with safe permissions later.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o002 != 0 {
            bail!(
                "refusing to start: the {what} {} is writable by every user (mode {:04o}); \
                 run `chmod o-w {}`",
                path.display(),
                mode & 0o7777,
                path.display()
            );
        }
    }
    Ok(())
}

/// The user and group to switch to.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// Look up `user` (and `group`, else the user's primary group) in the system databases.
pub fn lookup(user: &str, group: Option<&str>) -> anyhow::Result<Target> {
    let u = User::from_name(user)
        .with_context(|| format!("server.user: cannot look up user `{user}`"))?
        .with_context(|| format!("server.user: no user named `{user}` on this system"))?;
    let gid = match group {
        Some(g) => {
            Group::from_name(g)
                .with_context(|| format!("server.group: cannot look up group `{g}`"))?
                .with_context(|| format!("server.group: no group named `{g}` on this system"))?
                .gid
        }
        None => u.gid,
    };
    Ok(Target {
        name: user.to_string(),
        uid: u.uid,
        gid,
    })
}

/// Switch the whole process (every thread) to `target` for good, after handing it the state
/// folder. Already running as that user: nothing to do. Not root: an error, since the switch
/// cannot happen and serving as the wrong user would be a surprise.
pub fn drop_privileges(target: &Target, state_dir: &Path) -> anyhow::Result<()> {
    let (uid, euid) = (Uid::current(), Uid::effective());
    if uid == target.uid && euid == target.uid {
        return Ok(());
    }
    if !euid.is_root() {
        bail!(
            "server.user = \"{}\" needs rampart to be started as root (it runs as uid {euid}); \
             start it as root, or leave server.user empty",
            target.name
        );
    }
    hand_over(state_dir, target)?;
    // Supplementary groups first (root's would otherwise stay), then the group, then the
    // user: after setuid there is no way back, which is the point.
    nix::unistd::setgroups(&[target.gid]).context("dropping supplementary groups")?;
    nix::unistd::setgid(target.gid)
        .with_context(|| format!("switching to group id {}", target.gid))?;
    nix::unistd::setuid(target.uid)
        .with_context(|| format!("switching to user `{}`", target.name))?;
    // glibc applies these to every thread; make sure it did and that root cannot come back.
    if Uid::current() != target.uid
        || Uid::effective() != target.uid
        || Gid::effective() != target.gid
    {
        bail!("the switch to user `{}` did not take effect", target.name);
    }
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        bail!(
            "still able to regain root after switching to `{}`",
            target.name
        );
    }
    info!(
        user = %target.name,
        uid = %target.uid,
        gid = %target.gid,
        "dropped root privileges"
    );
    Ok(())
}

/// Make the state folder (and the files in it) belong to `target`, so list copies can still be
/// saved after the switch. Created if missing.
fn hand_over(state_dir: &Path, target: &Target) -> anyhow::Result<()> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating the state folder {}", state_dir.display()))?;
    let chown = |p: &Path| {
        nix::unistd::chown(p, Some(target.uid), Some(target.gid)).with_context(|| {
            format!(
                "handing {} to user `{}` (state.dir must be writable after the switch)",
                p.display(),
                target.name
            )
        })
    };
    chown(state_dir)?;
    let entries = std::fs::read_dir(state_dir)
        .with_context(|| format!("reading the state folder {}", state_dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        // Only plain files we saved; a symlink planted here is not followed.
        if let Ok(meta) = std::fs::symlink_metadata(&path)
            && meta.file_type().is_file()
            && meta.uid() != target.uid.as_raw()
        {
            chown(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_writable_folders_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("rampart.toml");
        std::fs::write(&config, "").unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        refuse_world_writable(&config, &state).unwrap();
        // A state folder that does not exist yet is fine.
        refuse_world_writable(&config, &dir.path().join("missing")).unwrap();

        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = refuse_world_writable(&config, &state)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("state folder") && e.contains(&state.display().to_string()),
            "{e}"
        );
        assert!(e.contains("0777"), "{e}");
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();

        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = refuse_world_writable(&config, &state)
            .unwrap_err()
            .to_string();
        assert!(e.contains("config file"), "{e}");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = refuse_world_writable(&config, &state)
            .unwrap_err()
            .to_string();
        assert!(e.contains("config folder"), "{e}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn unknown_users_and_groups_are_named() {
        let e = lookup("no-such-user-rampart", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-user-rampart"), "{e}");
        let e = lookup("root", Some("no-such-group-rampart"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-group-rampart"), "{e}");
        let root = lookup("root", None).unwrap();
        assert!(root.uid.is_root());
    }
}
