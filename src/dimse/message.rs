//! DIMSE command sets (PS3.7 section 9 and annex E): reading the requests radassist serves
//! (C-ECHO-RQ, C-STORE-RQ) and writing their responses, with the statuses PS3.4 gives
//! C-STORE; and the requests radassist makes of peers (C-STORE of its SRs, C-FIND and C-MOVE
//! for priors) with the responses it reads. Command sets are always Implicit VR Little Endian.

use crate::app::ingest::Refusal;
use crate::dicom::read_data_set;
use dicom_core::{dicom_value, DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// Command Field values (PS3.7 E.1-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandField {
    CStoreRq,
    CEchoRq,
    /// Any other command: radassist negotiates only Verification and storage, so a peer that
    /// sends one is not following the protocol.
    Other(u16),
}

impl CommandField {
    fn from_u16(value: u16) -> CommandField {
        match value {
            0x0001 => CommandField::CStoreRq,
            0x0030 => CommandField::CEchoRq,
            other => CommandField::Other(other),
        }
    }
}

/// Command Data Set Type (0000,0800) for "no data set".
const NO_DATA_SET: u16 = 0x0101;

/// A request's command set, as far as radassist reads it.
#[derive(Debug, Clone)]
pub struct Request {
    pub command: CommandField,
    pub message_id: u16,
    pub affected_sop_class_uid: String,
    pub affected_sop_instance_uid: String,
    pub has_data_set: bool,
}

/// Reads a command set; the error says which element is missing or malformed.
pub fn read_request(bytes: &[u8]) -> Result<Request, String> {
    let object = read_data_set(bytes, IMPLICIT_VR_LITTLE_ENDIAN.uid())
        .map_err(|e| format!("the command set does not parse: {e}"))?;
    let number = |tag, name: &str| -> Result<u16, String> {
        object
            .get(tag)
            .ok_or_else(|| format!("the command set has no {name}"))?
            .uint16()
            .map_err(|e| format!("the command set's {name} is not a US: {e}"))
    };
    let text = |tag| -> String {
        object
            .get(tag)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    };
    Ok(Request {
        command: CommandField::from_u16(number(tags::COMMAND_FIELD, "Command Field")?),
        message_id: number(tags::MESSAGE_ID, "Message ID")?,
        affected_sop_class_uid: text(tags::AFFECTED_SOP_CLASS_UID),
        affected_sop_instance_uid: text(tags::AFFECTED_SOP_INSTANCE_UID),
        has_data_set: number(tags::COMMAND_DATA_SET_TYPE, "Command Data Set Type")? != NO_DATA_SET,
    })
}

/// The C-STORE statuses radassist answers with (PS3.4 B.2.3, PS3.7 C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    /// 0000: stored durably (or held before with the same bytes: storing is idempotent).
    Success,
    /// 0111 (PS3.7 C.4): the SOP Instance UID is held with other bytes.
    DuplicateSopInstance,
    /// 0122: refused, SOP Class not supported (an SR outside a retrieval of priors).
    SopClassNotSupported,
    /// A700: refused, out of resources (memory or storage now): send it again later.
    OutOfResources,
    /// A900: the data set does not match the command's SOP Class or Instance, or the
    /// presentation context it came on.
    DataSetDoesNotMatch,
    /// C000: cannot understand: the data set does not parse or lacks its UIDs.
    CannotUnderstand,
    /// C001: understood, but not a chest radiograph radassist takes.
    NotAChestRadiograph,
}

impl StoreStatus {
    pub fn code(self) -> u16 {
        match self {
            StoreStatus::Success => 0x0000,
            StoreStatus::DuplicateSopInstance => 0x0111,
            StoreStatus::SopClassNotSupported => 0x0122,
            StoreStatus::OutOfResources => 0xA700,
            StoreStatus::DataSetDoesNotMatch => 0xA900,
            StoreStatus::CannotUnderstand => 0xC000,
            StoreStatus::NotAChestRadiograph => 0xC001,
        }
    }

    pub fn of_refusal(refusal: Refusal) -> StoreStatus {
        match refusal {
            Refusal::Unreadable => StoreStatus::CannotUnderstand,
            Refusal::DoesNotMatch => StoreStatus::DataSetDoesNotMatch,
            Refusal::NotTaken => StoreStatus::NotAChestRadiograph,
            Refusal::SopClassNotTaken => StoreStatus::SopClassNotSupported,
            Refusal::StoreFailed => StoreStatus::OutOfResources,
        }
    }
}

/// Error Comment (0000,0902) is an LO: at most 64 characters, no backslash or control
/// characters.
fn error_comment(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c == '\\' || c.is_control() { ' ' } else { c })
        .take(64)
        .collect()
}

fn encode(command: InMemDicomObject) -> Vec<u8> {
    let mut out = Vec::new();
    command
        .write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("a command set of known elements encodes");
    out
}

/// C-ECHO-RSP, Success.
pub fn echo_response(message_id: u16) -> Vec<u8> {
    encode(InMemDicomObject::command_from_element_iter([
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            dicom_value!(Str, super::VERIFICATION),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [0x8030])),
        DataElement::new(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            dicom_value!(U16, [message_id]),
        ),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            dicom_value!(U16, [NO_DATA_SET]),
        ),
        DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [0x0000])),
    ]))
}

/// C-STORE-RSP with `status`, and an Error Comment saying why when it is not Success.
pub fn store_response(request: &Request, status: StoreStatus, reason: &str) -> Vec<u8> {
    let mut elements = vec![
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            dicom_value!(Str, request.affected_sop_class_uid.as_str()),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [0x8001])),
        DataElement::new(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            dicom_value!(U16, [request.message_id]),
        ),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            dicom_value!(U16, [NO_DATA_SET]),
        ),
        DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [status.code()])),
        DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            dicom_value!(Str, request.affected_sop_instance_uid.as_str()),
        ),
    ];
    if status != StoreStatus::Success && !reason.is_empty() {
        elements.push(DataElement::new(
            tags::ERROR_COMMENT,
            VR::LO,
            dicom_value!(Str, error_comment(reason)),
        ));
    }
    encode(InMemDicomObject::command_from_element_iter(elements))
}

/// C-STORE-RQ for an instance of `sop_class_uid` (medium priority, a data set follows).
pub fn store_request(message_id: u16, sop_class_uid: &str, sop_instance_uid: &str) -> Vec<u8> {
    encode(InMemDicomObject::command_from_element_iter([
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            dicom_value!(Str, sop_class_uid),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [0x0001])),
        DataElement::new(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [message_id])),
        DataElement::new(tags::PRIORITY, VR::US, dicom_value!(U16, [0x0000])),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            dicom_value!(U16, [0x0000]),
        ),
        DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            dicom_value!(Str, sop_instance_uid),
        ),
    ]))
}

/// A response's command set, as far as radassist reads it.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub command_field: u16,
    pub status: u16,
    pub error_comment: String,
    pub has_data_set: bool,
    /// A C-MOVE's sub-operations (PS3.7 9.3.4.2): completed, failed, with warnings.
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
}

/// Reads a response's command set.
pub fn read_response(bytes: &[u8]) -> Result<Response, String> {
    let object = read_data_set(bytes, IMPLICIT_VR_LITTLE_ENDIAN.uid())
        .map_err(|e| format!("the response's command set does not parse: {e}"))?;
    let number = |tag| object.get(tag).and_then(|e| e.uint16().ok());
    Ok(Response {
        command_field: number(tags::COMMAND_FIELD).ok_or("the response has no Command Field")?,
        status: number(tags::STATUS).ok_or("the response has no Status")?,
        error_comment: object
            .get(tags::ERROR_COMMENT)
            .and_then(|e| e.to_str().ok())
            .map(|c| c.trim().to_string())
            .unwrap_or_default(),
        has_data_set: number(tags::COMMAND_DATA_SET_TYPE) != Some(NO_DATA_SET),
        completed: number(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS).unwrap_or(0),
        failed: number(tags::NUMBER_OF_FAILED_SUBOPERATIONS).unwrap_or(0),
        warning: number(tags::NUMBER_OF_WARNING_SUBOPERATIONS).unwrap_or(0),
    })
}

/// A response's Status and Error Comment.
pub fn read_status(bytes: &[u8]) -> Result<(u16, String), String> {
    read_response(bytes).map(|r| (r.status, r.error_comment))
}

/// Pending (PS3.4 C.4.1.1.4, C.4.2.1.5): more responses follow.
pub fn pending(status: u16) -> bool {
    status == 0xFF00 || status == 0xFF01
}

/// A query/retrieve request with an identifier following: C-FIND-RQ (0x0020) or, with a Move
/// Destination, C-MOVE-RQ (0x0021); medium priority.
pub fn query_request(
    message_id: u16,
    sop_class_uid: &str,
    move_destination: Option<&str>,
) -> Vec<u8> {
    let field: u16 = if move_destination.is_some() {
        0x0021
    } else {
        0x0020
    };
    let mut elements = vec![
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            dicom_value!(Str, sop_class_uid),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, dicom_value!(U16, [field])),
        DataElement::new(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [message_id])),
        DataElement::new(tags::PRIORITY, VR::US, dicom_value!(U16, [0x0000])),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            dicom_value!(U16, [0x0000]),
        ),
    ];
    if let Some(destination) = move_destination {
        elements.push(DataElement::new(
            tags::MOVE_DESTINATION,
            VR::AE,
            dicom_value!(Str, destination),
        ));
    }
    encode(InMemDicomObject::command_from_element_iter(elements))
}

/// Success, or a warning (PS3.4 B.2.3: the instance was stored, perhaps coerced).
pub fn stored(status: u16) -> bool {
    status == 0x0000 || status == 0x0001 || (status & 0xF000) == 0xB000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_response_reads_back_with_its_status_and_a_bounded_comment() {
        let request = Request {
            command: CommandField::CStoreRq,
            message_id: 7,
            affected_sop_class_uid: "1.2.840.10008.5.1.4.1.1.1".into(),
            affected_sop_instance_uid: "1.2.3.4".into(),
            has_data_set: true,
        };
        let long = "a reason \\ with a backslash and far more than sixty-four characters in it";
        let bytes = store_response(&request, StoreStatus::DataSetDoesNotMatch, long);
        let object = InMemDicomObject::read_dataset_with_ts(
            bytes.as_slice(),
            &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .unwrap();
        assert_eq!(object.get(tags::STATUS).unwrap().uint16().unwrap(), 0xA900);
        assert_eq!(
            object
                .get(tags::MESSAGE_ID_BEING_RESPONDED_TO)
                .unwrap()
                .uint16()
                .unwrap(),
            7
        );
        let comment = object.get(tags::ERROR_COMMENT).unwrap().to_str().unwrap();
        assert!(comment.trim_end().chars().count() <= 64, "{comment}");
        assert!(!comment.contains('\\'), "{comment}");
    }

    #[test]
    fn a_command_set_without_its_command_field_is_named() {
        let object = InMemDicomObject::command_from_element_iter([DataElement::new(
            tags::MESSAGE_ID,
            VR::US,
            dicom_value!(U16, [1]),
        )]);
        let error = read_request(&encode(object)).unwrap_err();
        assert!(error.contains("Command Field"), "{error}");
        assert!(read_request(b"\x00\x01garbage").is_err());
    }

    /// Found by the dicom_pdu fuzz target: an element of a 24-byte command set claiming 2 GiB
    /// made the parser reserve 2 GiB before reading; the structure check refuses it first.
    #[test]
    fn a_command_element_longer_than_the_command_set_is_refused_before_anything_is_allocated() {
        let mut bytes = vec![0x00, 0x00, 0x02, 0x00];
        bytes.extend_from_slice(&0x8000_0000u32.to_le_bytes());
        bytes.extend_from_slice(b"1.2.840.10008.1.1\0");
        for read in [
            read_request(&bytes).map(|_| ()),
            read_response(&bytes).map(|_| ()),
        ] {
            // The structure check's words: the parser itself was never reached.
            let error = read.unwrap_err();
            assert!(error.contains("claims 2147483648 bytes"), "{error}");
        }
    }
}
