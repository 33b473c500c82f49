//! The power-loss filesystem's state, kept twice: the *live* tree, what running programs see
//! (every write, create, rename and unlink as it happens), and per inode its *durable* content,
//! what a power cut leaves: a file's bytes as of its last `fsync`/`fdatasync`, a directory's
//! entries as of its last `fsync`. A power cut rebuilds the live tree from the durable
//! contents, walking from the root, so that:
//!
//! - a file's bytes written after its last sync are gone (a file never synced is empty);
//! - a name created, removed or renamed in a directory not synced since is as it was at that
//!   directory's last sync (a new file whose folder was never synced is gone, however often
//!   the file itself was synced; a rename into a synced folder out of one not synced leaves
//!   both names, as POSIX allows and ext4 can);
//! - whatever is no longer reachable from the root is gone.
//!
//! This is the strictest reading of POSIX (the one LazyFS and the ALICE study use), not
//! ext4's: ext4's journal often makes more durable than was asked for (a file's fsync commits
//! the whole transaction, names included), so software that passes here is safe there and
//! not the other way round. Not modelled: torn writes within one `write` (each write is all or
//! nothing), reordering of writes within an unsynced file (its whole unsynced state goes),
//! metadata other than size and names (permissions and times survive a cut as they were),
//! `sync(2)`/`syncfs(2)` (FUSE does not pass them to the filesystem: the tests call
//! [`Tree::sync_everything`] instead), hard links and symbolic links (refused).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::time::SystemTime;

pub type Ino = u64;
/// The root directory's inode (FUSE's).
pub const ROOT: Ino = 1;
/// An error for the caller, as an errno value.
pub type Errno = i32;

/// What an inode holds. A file's bytes are shared with its durable copy until the next write
/// (copy on write), so syncing a file that is not written again costs nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    File(Arc<Vec<u8>>),
    Directory(BTreeMap<OsString, Ino>),
}

impl Content {
    fn empty_like(&self) -> Content {
        match self {
            Content::File(_) => Content::File(Arc::default()),
            Content::Directory(_) => Content::Directory(BTreeMap::new()),
        }
    }
}

/// An inode's metadata (not subject to loss; see the module comment).
#[derive(Clone, Debug)]
pub struct Meta {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// An inode as programs see it.
#[derive(Clone, Debug)]
pub struct Node {
    pub content: Content,
    pub meta: Meta,
    /// How many directory entries name it.
    pub links: u32,
    /// How many open handles it has (an unlinked file lives on while open).
    pub open: u32,
}

/// What happened to the tree since it was mounted: the tests report it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub file_syncs: u64,
    pub directory_syncs: u64,
    pub power_cuts: u64,
}

/// The live tree and the durable contents.
pub struct Tree {
    live: HashMap<Ino, Node>,
    /// Each directory's parent in the live tree (a directory has one name).
    parents: HashMap<Ino, Ino>,
    durable: HashMap<Ino, Content>,
    /// Metadata of every inode ever made, for the ones a cut brings back.
    metas: HashMap<Ino, Meta>,
    next: Ino,
    pub counts: Counts,
}

impl Tree {
    /// An empty filesystem whose root directory is durable.
    pub fn new() -> Tree {
        let meta = Meta {
            perm: 0o755,
            uid: 0,
            gid: 0,
            mtime: SystemTime::now(),
            ctime: SystemTime::now(),
        };
        let root = Node {
            content: Content::Directory(BTreeMap::new()),
            meta: meta.clone(),
            links: 1,
            open: 0,
        };
        Tree {
            live: HashMap::from([(ROOT, root.clone())]),
            parents: HashMap::from([(ROOT, ROOT)]),
            durable: HashMap::from([(ROOT, root.content)]),
            metas: HashMap::from([(ROOT, meta)]),
            next: ROOT + 1,
            counts: Counts::default(),
        }
    }

    pub fn node(&self, ino: Ino) -> Result<&Node, Errno> {
        self.live.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.live.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn entries(&self, directory: Ino) -> Result<&BTreeMap<OsString, Ino>, Errno> {
        match &self.node(directory)?.content {
            Content::Directory(entries) => Ok(entries),
            Content::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, directory: Ino) -> Result<&mut BTreeMap<OsString, Ino>, Errno> {
        let node = self.node_mut(directory)?;
        node.meta.mtime = SystemTime::now();
        match &mut node.content {
            Content::Directory(entries) => Ok(entries),
            Content::File(_) => Err(libc::ENOTDIR),
        }
    }

    pub fn lookup(&self, directory: Ino, name: &OsStr) -> Result<Ino, Errno> {
        self.entries(directory)?
            .get(name)
            .copied()
            .ok_or(libc::ENOENT)
    }

    /// The directory's entries with `.` and `..`, in a stable order.
    pub fn list(&self, directory: Ino) -> Result<Vec<(OsString, Ino)>, Errno> {
        let entries = self.entries(directory)?;
        let parent = self.parents.get(&directory).copied().unwrap_or(ROOT);
        Ok([(".".into(), directory), ("..".into(), parent)]
            .into_iter()
            .chain(entries.iter().map(|(n, i)| (n.clone(), *i)))
            .collect())
    }

    /// A new file (or, with `directory`, folder) named `name` in `parent`.
    pub fn make(
        &mut self,
        parent: Ino,
        name: &OsStr,
        directory: bool,
        perm: u16,
        owner: (u32, u32),
    ) -> Result<Ino, Errno> {
        if self.entries(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        if name.len() > 255 {
            return Err(libc::ENAMETOOLONG);
        }
        let ino = self.next;
        self.next += 1;
        let meta = Meta {
            perm,
            uid: owner.0,
            gid: owner.1,
            mtime: SystemTime::now(),
            ctime: SystemTime::now(),
        };
        let content = if directory {
            self.parents.insert(ino, parent);
            Content::Directory(BTreeMap::new())
        } else {
            Content::File(Arc::default())
        };
        self.metas.insert(ino, meta.clone());
        self.live.insert(
            ino,
            Node {
                content,
                meta,
                links: 1,
                open: 0,
            },
        );
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// Removes `name` from `parent`: a file (`directory` false) or an empty folder.
    pub fn remove(&mut self, parent: Ino, name: &OsStr, directory: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.node(ino)?.content, directory) {
            (Content::Directory(_), false) => return Err(libc::EISDIR),
            (Content::File(_), true) => return Err(libc::ENOTDIR),
            (Content::Directory(entries), true) if !entries.is_empty() => {
                return Err(libc::ENOTEMPTY)
            }
            _ => {}
        }
        self.entries_mut(parent)?.remove(name);
        self.unlinked(ino);
        Ok(())
    }

    /// One name of `ino` fewer: it goes once no name and no handle is left.
    fn unlinked(&mut self, ino: Ino) {
        if let Some(node) = self.live.get_mut(&ino) {
            node.links = node.links.saturating_sub(1);
            node.meta.ctime = SystemTime::now();
            if node.links == 0 && node.open == 0 {
                self.live.remove(&ino);
                self.parents.remove(&ino);
            }
        }
    }

    /// rename(2) within this filesystem; `no_replace` is RENAME_NOREPLACE.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        let moving_directory = matches!(self.node(ino)?.content, Content::Directory(_));
        if new_name.len() > 255 {
            return Err(libc::ENAMETOOLONG);
        }
        // A folder cannot move into itself or below itself.
        if moving_directory {
            let mut at = new_parent;
            loop {
                if at == ino {
                    return Err(libc::EINVAL);
                }
                if at == ROOT {
                    break;
                }
                at = self.parents.get(&at).copied().unwrap_or(ROOT);
            }
        }
        if let Ok(existing) = self.lookup(new_parent, new_name) {
            if existing == ino {
                return Ok(());
            }
            if no_replace {
                return Err(libc::EEXIST);
            }
            match (&self.node(existing)?.content, moving_directory) {
                (Content::Directory(_), false) => return Err(libc::EISDIR),
                (Content::File(_), true) => return Err(libc::ENOTDIR),
                (Content::Directory(entries), true) if !entries.is_empty() => {
                    return Err(libc::ENOTEMPTY)
                }
                _ => {}
            }
            self.entries_mut(new_parent)?.remove(new_name);
            self.unlinked(existing);
        } else {
            self.entries(new_parent)?;
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(new_parent)?
            .insert(new_name.to_owned(), ino);
        if moving_directory {
            self.parents.insert(ino, new_parent);
        }
        self.node_mut(ino)?.meta.ctime = SystemTime::now();
        Ok(())
    }

    fn bytes_mut(&mut self, ino: Ino) -> Result<&mut Vec<u8>, Errno> {
        let node = self.node_mut(ino)?;
        node.meta.mtime = SystemTime::now();
        match &mut node.content {
            Content::File(bytes) => Ok(Arc::make_mut(bytes)),
            Content::Directory(_) => Err(libc::EISDIR),
        }
    }

    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<&[u8], Errno> {
        match &self.node(ino)?.content {
            Content::File(bytes) => {
                let start = (offset as usize).min(bytes.len());
                let end = start.saturating_add(size as usize).min(bytes.len());
                Ok(&bytes[start..end])
            }
            Content::Directory(_) => Err(libc::EISDIR),
        }
    }

    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let offset = usize::try_from(offset).map_err(|_| libc::EFBIG)?;
        let end = offset.checked_add(data.len()).ok_or(libc::EFBIG)?;
        let bytes = self.bytes_mut(ino)?;
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[offset..end].copy_from_slice(data);
        Ok(())
    }

    pub fn truncate(&mut self, ino: Ino, size: u64) -> Result<(), Errno> {
        let size = usize::try_from(size).map_err(|_| libc::EFBIG)?;
        self.bytes_mut(ino)?.resize(size, 0);
        Ok(())
    }

    pub fn set_meta(&mut self, ino: Ino, change: impl FnOnce(&mut Meta)) -> Result<(), Errno> {
        let node = self.node_mut(ino)?;
        change(&mut node.meta);
        node.meta.ctime = SystemTime::now();
        let meta = node.meta.clone();
        self.metas.insert(ino, meta);
        Ok(())
    }

    pub fn opened(&mut self, ino: Ino) -> Result<(), Errno> {
        self.node_mut(ino)?.open += 1;
        Ok(())
    }

    pub fn released(&mut self, ino: Ino) {
        if let Some(node) = self.live.get_mut(&ino) {
            node.open = node.open.saturating_sub(1);
            if node.links == 0 && node.open == 0 {
                self.live.remove(&ino);
            }
        }
    }

    /// fsync(2) or fdatasync(2) of `ino`: a file's bytes, or a folder's entries, are durable.
    /// A folder's entries naming inodes never synced make them durable as empty (the name
    /// survives a cut, the content written since does not).
    pub fn sync(&mut self, ino: Ino) -> Result<(), Errno> {
        let content = self.node(ino)?.content.clone();
        if let Content::Directory(entries) = &content {
            self.counts.directory_syncs += 1;
            for child in entries.values() {
                if !self.durable.contains_key(child) {
                    let empty = self.node(*child)?.content.empty_like();
                    self.durable.insert(*child, empty);
                }
            }
        } else {
            self.counts.file_syncs += 1;
        }
        self.durable.insert(ino, content);
        Ok(())
    }

    /// As if every inode were synced (a test's checkpoint; `sync(2)` does not reach FUSE).
    pub fn sync_everything(&mut self) {
        for (ino, node) in &self.live {
            self.durable.insert(*ino, node.content.clone());
        }
    }

    /// The power cut: the live tree becomes what the durable contents reach from the root.
    /// A folder reachable by two names (renames synced in one folder and not the other) keeps
    /// the first name met, so the tree stays a tree.
    pub fn power_cut(&mut self) {
        let mut live = HashMap::new();
        let mut parents = HashMap::from([(ROOT, ROOT)]);
        let mut links: HashMap<Ino, u32> = HashMap::from([(ROOT, 1)]);
        let mut seen_directories = HashSet::from([ROOT]);
        let mut pending = vec![ROOT];
        while let Some(ino) = pending.pop() {
            let mut content = self.durable[&ino].clone();
            if let Content::Directory(entries) = &mut content {
                entries.retain(|_, child| match &self.durable[child] {
                    Content::Directory(_) => {
                        if !seen_directories.insert(*child) {
                            return false;
                        }
                        parents.insert(*child, ino);
                        pending.push(*child);
                        *links.entry(*child).or_default() += 1;
                        true
                    }
                    Content::File(_) => {
                        if *links.entry(*child).or_default() == 0 {
                            pending.push(*child);
                        }
                        *links.get_mut(child).unwrap() += 1;
                        true
                    }
                });
            }
            live.insert(
                ino,
                Node {
                    content,
                    meta: self.metas[&ino].clone(),
                    links: 0,
                    open: 0,
                },
            );
        }
        for (ino, node) in &mut live {
            node.links = links[ino];
        }
        self.durable = live
            .iter()
            .map(|(ino, node)| (*ino, node.content.clone()))
            .collect();
        self.live = live;
        self.parents = parents;
        self.counts.power_cuts += 1;
    }
}
