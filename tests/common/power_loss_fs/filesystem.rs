//! The kernel's requests (FUSE, through the `fuser` crate) answered from the [`Tree`]: each
//! request locks the tree, does one operation, and replies. Writes reach here one by one (no
//! writeback cache is asked for), so the tree sees every write when it happens; `fsync` and
//! `fsyncdir` are the only way anything becomes durable. File locks are left to the kernel
//! (the filesystem does not claim POSIX locks), which is right while every process using the
//! mount runs on this one kernel.

use super::tree::{Content, Errno, Ino, Node, Tree};
use fuser::{
    FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// How long the kernel may cache names and attributes: every change passes through it.
const TTL: Duration = Duration::from_secs(1);
/// What `statfs` reports: plenty of room, so the store's reserve never refuses.
const BLOCKS: u64 = 1 << 24;
const BLOCK_SIZE: u32 = 4096;

/// The filesystem the kernel talks to; the tree is shared with the test's handle.
pub struct PowerLossFilesystem {
    pub tree: Arc<Mutex<Tree>>,
}

fn errno(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e)
}

fn attributes(ino: Ino, node: &Node) -> FileAttr {
    let (kind, size) = match &node.content {
        Content::File(bytes) => (FileType::RegularFile, bytes.len() as u64),
        Content::Directory(entries) => (FileType::Directory, entries.len() as u64),
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: node.meta.mtime,
        mtime: node.meta.mtime,
        ctime: node.meta.ctime,
        crtime: node.meta.ctime,
        kind,
        perm: node.meta.perm,
        nlink: node.links.max(1),
        uid: node.meta.uid,
        gid: node.meta.gid,
        rdev: 0,
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

/// The answer to a request that names an inode (lookup, mknod, mkdir).
fn entry(reply: ReplyEntry, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

/// The answer to a request for an inode's attributes (getattr, setattr).
fn attributes_of(reply: ReplyAttr, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.attr(&TTL, &attr),
        Err(e) => reply.error(errno(e)),
    }
}

/// The answer to a request that returns nothing.
fn done(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

impl PowerLossFilesystem {
    fn tree(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn attr_of(tree: &Tree, ino: Ino) -> Result<FileAttr, Errno> {
        tree.node(ino).map(|node| attributes(ino, node))
    }

    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        directory: bool,
        mode: u32,
        umask: u32,
    ) -> Result<FileAttr, Errno> {
        let perm = (mode & !umask & 0o7777) as u16;
        let mut tree = self.tree();
        let ino = tree.make(parent.0, name, directory, perm, (req.uid(), req.gid()))?;
        Self::attr_of(&tree, ino)
    }
}

impl Filesystem for PowerLossFilesystem {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let tree = self.tree();
        let found = tree.lookup(parent.0, name);
        entry(reply, found.and_then(|ino| Self::attr_of(&tree, ino)))
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        attributes_of(reply, Self::attr_of(&self.tree(), ino.0))
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut tree = self.tree();
        let result = (|| {
            if let Some(size) = size {
                tree.truncate(ino.0, size)?;
            }
            tree.set_meta(ino.0, |meta| {
                if let Some(mode) = mode {
                    meta.perm = (mode & 0o7777) as u16;
                }
                meta.uid = uid.unwrap_or(meta.uid);
                meta.gid = gid.unwrap_or(meta.gid);
                match mtime {
                    Some(TimeOrNow::SpecificTime(t)) => meta.mtime = t,
                    Some(TimeOrNow::Now) => meta.mtime = SystemTime::now(),
                    None => {}
                }
            })?;
            Self::attr_of(&tree, ino.0)
        })();
        attributes_of(reply, result)
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(fuser::Errno::EPERM);
        }
        entry(reply, self.make(req, parent, name, false, mode, umask))
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        entry(reply, self.make(req, parent, name, true, mode, umask))
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        done(reply, self.tree().remove(parent.0, name, false))
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        done(reply, self.tree().remove(parent.0, name, true))
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(fuser::Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let renamed = self
            .tree()
            .rename(parent.0, name, new_parent.0, new_name, no_replace);
        done(reply, renamed)
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.tree().opened(ino.0) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let made = self.make(req, parent, name, false, mode, umask);
        match made.and_then(|attr| self.tree().opened(attr.ino.0).map(|()| attr)) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        match self.tree().read(ino.0, offset, size) {
            Ok(bytes) => reply.data(bytes),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.tree().write(ino.0, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.tree().released(ino.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _data: bool, reply: ReplyEmpty) {
        done(reply, self.tree().sync(ino.0))
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let tree = self.tree();
        let entries = match tree.list(ino.0) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(e)),
        };
        for (i, (name, child)) in entries.iter().enumerate().skip(offset as usize) {
            let kind = match tree.node(*child).map(|n| &n.content) {
                Ok(Content::Directory(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            if reply.add(INodeNo(*child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _data: bool,
        reply: ReplyEmpty,
    ) {
        done(reply, self.tree().sync(ino.0))
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(
            BLOCKS, BLOCKS, BLOCKS, BLOCKS, BLOCKS, BLOCK_SIZE, 255, BLOCK_SIZE,
        );
    }
}
