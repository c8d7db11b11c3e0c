//! `wasi:filesystem/types` for guests: wasmtime-wasi's implementation, with the calls that can
//! grow the scratch directory charged to its [`Quota`] first and those that can shrink it
//! making the next charge count again (the module doc of [`super`]). Everything else is
//! passed through as it is.

use std::sync::Arc;

use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, ErrorCode, HostDescriptor, HostDirectoryEntryStream,
};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsError, FsResult};

use super::{Quota, QuotaStream, StreamAt};

/// The filesystem a guest's calls reach: [`ScratchFs`].
pub struct ScratchFilesystem;

impl HasData for ScratchFilesystem {
    type Data<'a> = ScratchFs<'a>;
}

/// wasmtime-wasi's filesystem view and the invocation's scratch quota, if it has scratch
/// space (without it there is nothing to open: no directory is preopened).
pub struct ScratchFs<'a> {
    pub(crate) fs: WasiFilesystemCtxView<'a>,
    pub(crate) quota: Option<Arc<Quota>>,
}

impl ScratchFs<'_> {
    /// The open file behind `fd`, for a call that writes to it.
    fn writable(&mut self, fd: &Resource<types::Descriptor>) -> FsResult<Arc<std::fs::File>> {
        match self.fs.table.get(fd)? {
            Descriptor::File(file) if file.perms.write_not_permitted() => {
                Err(ErrorCode::NotPermitted.into())
            }
            Descriptor::File(file) => Ok(file.file.clone()),
            Descriptor::Dir(_) => Err(ErrorCode::BadDescriptor.into()),
        }
    }

    /// Charges what making `fd` at least `end` bytes long adds.
    fn grow_to(&mut self, fd: &Resource<types::Descriptor>, end: u64) -> FsResult<()> {
        let Some(quota) = self.quota.clone() else {
            return Ok(());
        };
        let file = self.writable(fd)?;
        let len = file.metadata().map_err(|e| ErrorCode::from(&e))?.len();
        Ok(quota.grow(end.saturating_sub(len))?)
    }

    fn room_for_entry(&self) -> FsResult<()> {
        match &self.quota {
            Some(quota) => Ok(quota.room_for_entry()?),
            None => Ok(()),
        }
    }

    /// After a call that may have shrunk the directory: if it did anything, count again.
    fn shrunk<T>(&self, result: FsResult<T>) -> FsResult<T> {
        if let (Some(quota), Ok(_)) = (&self.quota, &result) {
            quota.stale();
        }
        result
    }

    /// A stream writing to `fd` that charges the quota.
    fn stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        at: StreamAt,
    ) -> FsResult<Resource<DynOutputStream>> {
        let Some(quota) = self.quota.clone() else {
            return match at {
                StreamAt::Position(offset) => self.fs.write_via_stream(fd, offset),
                StreamAt::Append => self.fs.append_via_stream(fd),
            };
        };
        let file = self.writable(&fd)?;
        let stream: DynOutputStream = Box::new(QuotaStream { file, at, quota });
        Ok(self.fs.table.push(stream)?)
    }
}

impl types::Host for ScratchFs<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        self.fs.convert_error_code(err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        self.fs.filesystem_error_code(err)
    }
}

impl HostDescriptor for ScratchFs<'_> {
    async fn advise(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        self.fs.advise(fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.fs.sync_data(fd).await
    }

    async fn get_flags(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorFlags> {
        self.fs.get_flags(fd).await
    }

    async fn get_type(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorType> {
        self.fs.get_type(fd).await
    }

    async fn set_size(
        &mut self,
        fd: Resource<types::Descriptor>,
        size: types::Filesize,
    ) -> FsResult<()> {
        self.grow_to(&fd, size)?;
        let set = self.fs.set_size(fd, size).await;
        self.shrunk(set)
    }

    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        self.fs.set_times(fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Resource<types::Descriptor>,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        self.fs.read(fd, len, offset).await
    }

    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        self.grow_to(&fd, offset.saturating_add(buf.len() as u64))?;
        self.fs.write(fd, buf, offset).await
    }

    async fn read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        self.fs.read_directory(fd).await
    }

    async fn sync(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.fs.sync(fd).await
    }

    async fn create_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        self.room_for_entry()?;
        self.fs.create_directory_at(fd, path).await
    }

    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorStat> {
        self.fs.stat(fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        self.fs.stat_at(fd, path_flags, path).await
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        self.fs.set_times_at(fd, path_flags, path, atim, mtim).await
    }

    async fn link_at(
        &mut self,
        _fd: Resource<types::Descriptor>,
        _old_path_flags: types::PathFlags,
        _old_path: String,
        _new_descriptor: Resource<types::Descriptor>,
        _new_path: String,
    ) -> FsResult<()> {
        Err(ErrorCode::NotPermitted.into())
    }

    async fn open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        let Some(quota) = self.quota.clone() else {
            return self.fs.open_at(fd, path_flags, path, oflags, flags).await;
        };
        quota.room_to_open()?;
        if oflags.contains(types::OpenFlags::CREATE) {
            quota.room_for_entry()?;
        }
        let opened = self.fs.open_at(fd, path_flags, path, oflags, flags).await?;
        let held = match self.fs.table.get(&opened)? {
            Descriptor::File(file) => file.file.clone(),
            Descriptor::Dir(dir) => dir.dir.clone(),
        };
        quota.opened(&held);
        if oflags.contains(types::OpenFlags::TRUNCATE) {
            quota.stale();
        }
        Ok(opened)
    }

    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        HostDescriptor::drop(&mut self.fs, fd)
    }

    async fn readlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<String> {
        self.fs.readlink_at(fd, path).await
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let removed = self.fs.remove_directory_at(fd, path).await;
        self.shrunk(removed)
    }

    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let renamed = self.fs.rename_at(fd, old_path, new_fd, new_path).await;
        self.shrunk(renamed)
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        self.room_for_entry()?;
        self.fs.symlink_at(fd, src_path, dest_path).await
    }

    async fn unlink_file_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let unlinked = self.fs.unlink_file_at(fd, path).await;
        self.shrunk(unlinked)
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        self.fs.read_via_stream(fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        self.stream(fd, StreamAt::Position(offset))
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        self.stream(fd, StreamAt::Append)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<types::Descriptor>,
        b: Resource<types::Descriptor>,
    ) -> wasmtime::Result<bool> {
        self.fs.is_same_object(a, b).await
    }

    async fn metadata_hash(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::MetadataHashValue> {
        self.fs.metadata_hash(fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        self.fs.metadata_hash_at(fd, path_flags, path).await
    }
}

impl HostDirectoryEntryStream for ScratchFs<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        self.fs.read_directory_entry(stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.fs, stream)
    }
}
