//! The segment format: files, frames, records and footers.
//! docs/design.md gives every byte.

pub(crate) mod codec;
pub(crate) mod entry_codec;
pub mod file;
pub mod footer;
pub(crate) mod frame;
mod public_frame;
mod raw;
pub(crate) mod read;

pub use crate::store::compaction::CompactionResult;
pub use file::{
    parse_segment_filename, segment_filename, SegmentHeader, SEGMENT_EXTENSION, SEGMENT_FORMAT_VERSION,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
pub use footer::{FOOTER_MAGIC, FOOTER_TRAILER_LEN};
pub use public_frame::{frame_decode, frame_encode, FrameDecodeError};
pub use raw::{Active, FramePayload, Sealed, Segment};
pub(crate) use read::Resume;
