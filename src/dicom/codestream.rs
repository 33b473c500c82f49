//! Image size and component count read off a codestream's own header, for the codecs whose
//! dicom-rs adapters write into a buffer sized from the DICOM header without comparing the two
//! (JPEG 2000, JPEG-LS): a codestream smaller than the header says would leave the rest of the
//! frame black, and one of another shape would scramble the rows.

/// What the codestream says about the image.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CodestreamSize {
    pub columns: u32,
    pub rows: u32,
    pub components: u32,
}

fn be16(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes([
        *data.get(at)?,
        *data.get(at + 1)?,
    ])))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *data.get(at)?,
        *data.get(at + 1)?,
        *data.get(at + 2)?,
        *data.get(at + 3)?,
    ]))
}

/// JPEG 2000: the SIZ segment that follows SOC (FF4F FF51), in a bare codestream or inside a
/// JP2 wrapper (searched in the first kilobytes). Size = Xsiz - XOsiz by Ysiz - YOsiz.
pub(crate) fn jpeg2000(data: &[u8]) -> Option<CodestreamSize> {
    let search = &data[..data.len().min(4096)];
    let start = search
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])?;
    let siz = start + 4; // Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, ..., Csiz
    let (x, y) = (be32(data, siz + 4)?, be32(data, siz + 8)?);
    let (x0, y0) = (be32(data, siz + 12)?, be32(data, siz + 16)?);
    Some(CodestreamSize {
        columns: x.checked_sub(x0)?,
        rows: y.checked_sub(y0)?,
        components: be16(data, siz + 36)?,
    })
}

/// JPEG-LS: the SOF55 segment (FFF7): Lf, P, Y (rows), X (columns), Nf.
pub(crate) fn jpeg_ls(data: &[u8]) -> Option<CodestreamSize> {
    let mut at = 2; // after SOI
    if data.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    loop {
        if *data.get(at)? != 0xFF {
            return None;
        }
        let marker = *data.get(at + 1)?;
        let length = be16(data, at + 2)? as usize;
        if marker == 0xF7 {
            return Some(CodestreamSize {
                rows: be16(data, at + 5)?,
                columns: be16(data, at + 7)?,
                components: u32::from(*data.get(at + 9)?),
            });
        }
        at += 2 + length;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_jpeg2000_siz() {
        let mut siz = vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0x00, 0x00];
        for v in [512u32, 300, 12, 0, 0, 0, 0, 0] {
            siz.extend_from_slice(&v.to_be_bytes());
        }
        siz.extend_from_slice(&1u16.to_be_bytes());
        assert_eq!(
            jpeg2000(&siz),
            Some(CodestreamSize {
                columns: 500,
                rows: 300,
                components: 1
            })
        );
        assert_eq!(jpeg2000(&siz[..20]), None);
    }

    #[test]
    fn reads_a_jpeg_ls_frame_header() {
        let data = [
            0xFF, 0xD8, 0xFF, 0xF7, 0x00, 0x0B, 0x0C, 0x01, 0xB8, 0x01, 0xB9, 0x01, 0x01, 0x11,
            0x00,
        ];
        assert_eq!(
            jpeg_ls(&data),
            Some(CodestreamSize {
                columns: 441,
                rows: 440,
                components: 1
            })
        );
        assert_eq!(jpeg_ls(&data[..8]), None);
    }
}
