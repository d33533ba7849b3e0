//! A segment file as a low-level frame container (batpak 0.3.0's
//! `Segment<Active | Sealed>` and `FramePayload`), in this crate's format:
//! the 32-byte header, then frames back to back. It is a tool for tests and
//! for copying frames between files; the store itself writes segments
//! through its writer. A file made here opens as part of a store only if
//! its frames are store records (for example, copied from a store segment
//! with [`Segment::append_frames_from_segment`]); frames made with
//! [`super::frame_encode`] hold JSON and recovery would refuse them.

use super::file::{segment_filename, SegmentHeader, SEGMENT_HEADER_LEN};
use super::footer::{footer_start, FOOTER_TRAILER_LEN};
use crate::event::Event;
use crate::store::config::SyncMode;
use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::marker::PhantomData;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An event with its coordinate spelled out, for framing with
/// [`super::frame_encode`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FramePayload<P> {
    /// The event.
    pub event: Event<P>,
    /// Its entity.
    pub entity: String,
    /// Its scope.
    pub scope: String,
}

/// Typestate: a segment that takes frames.
#[derive(Debug, Clone, Copy)]
pub struct Active;

/// Typestate: a segment that is fsynced and takes no more frames.
#[derive(Debug, Clone, Copy)]
pub struct Sealed;

/// One segment file, appended to frame by frame.
#[derive(Debug)]
pub struct Segment<State> {
    id: u64,
    path: PathBuf,
    file: File,
    len: u64,
    _state: PhantomData<State>,
}

impl Segment<Active> {
    /// Creates segment `id` in `dir` with its header. Crash-atomic like the
    /// store's own segments: the header is written and fsynced under a
    /// temporary name, then linked to the real name, which fails if any
    /// file has that name.
    pub fn create(dir: &Path, id: u64) -> Result<Self, StoreError> {
        let path = dir.join(segment_filename(id));
        let tmp = dir.join(format!("{}.tmp", segment_filename(id)));
        let _ = std::fs::remove_file(&tmp);
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&tmp)?;
        let header = SegmentHeader::new(id, crate::store::config::system_now_us()).encode();
        let linked = file
            .write_all_at(&header, 0)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::hard_link(&tmp, &path));
        let removed = std::fs::remove_file(&tmp);
        linked?;
        removed?;
        File::open(dir)?.sync_all()?;
        Ok(Self { id, path, file, len: SEGMENT_HEADER_LEN as u64, _state: PhantomData })
    }

    /// Appends one whole frame; returns the offset it starts at.
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<u64, StoreError> {
        let at = self.len;
        self.file.write_all_at(frame, at)?;
        self.len += frame.len() as u64;
        Ok(at)
    }

    /// Appends every frame of the segment file at `path` (its header and
    /// any footer left out); returns the number of bytes copied.
    pub fn append_frames_from_segment(&mut self, path: &Path) -> Result<u64, StoreError> {
        let bytes = std::fs::read(path)?;
        let id = super::file::parse_segment_filename(
            &path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        )
        .unwrap_or(0);
        SegmentHeader::decode(&bytes, id)?;
        let footer =
            if bytes.len() >= SEGMENT_HEADER_LEN + FOOTER_TRAILER_LEN { footer_start(&bytes) } else { None };
        let end = footer.filter(|s| *s as usize >= SEGMENT_HEADER_LEN).unwrap_or(bytes.len() as u64);
        let frames = bytes.get(SEGMENT_HEADER_LEN..end as usize).unwrap_or_default();
        self.write_frame(frames)?;
        Ok(frames.len() as u64)
    }

    /// Whether the segment has reached `max_bytes`.
    pub fn needs_rotation(&self, max_bytes: u64) -> bool {
        self.len >= max_bytes
    }

    /// Flushes written frames to stable storage.
    pub fn sync_with_mode(&self, mode: &SyncMode) -> Result<(), StoreError> {
        match mode {
            SyncMode::SyncAll => self.file.sync_all()?,
            SyncMode::SyncData => self.file.sync_data()?,
        }
        Ok(())
    }

    /// Fsyncs the segment; it takes no more frames.
    pub fn seal(self) -> Result<Segment<Sealed>, StoreError> {
        self.file.sync_all()?;
        Ok(Segment { id: self.id, path: self.path, file: self.file, len: self.len, _state: PhantomData })
    }
}

impl<State> Segment<State> {
    /// The segment id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written, header included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no frame has been written.
    pub fn is_empty(&self) -> bool {
        self.len == SEGMENT_HEADER_LEN as u64
    }
}
