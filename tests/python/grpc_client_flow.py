#!/usr/bin/env python3
"""A second client, written against proto/ only: Python grpcio stubs generated at test time
with grpc_tools.protoc. It pushes the sample study (the prior, then the current film), waits for
the draft in the worklist, signs it, and reads the QA comparison. Run by tests/service.rs:

    .radassist/test-venv/bin/python tests/python/grpc_client_flow.py ADDRESS ROOT
"""
import os
import sys
import tempfile

from grpc_tools import protoc

address, root = sys.argv[1], sys.argv[2]
PACS, RADIOLOGIST, QA = "pacs-token-0123456789", "radiologist-token-0123456789", "qa-token-0123456789"

stubs = tempfile.mkdtemp()
proto_root = os.path.join(root, "proto")
import grpc_tools  # noqa: E402

well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
files = [os.path.join(proto_root, "radassist", "v1", f) for f in ("ingest.proto", "worklist.proto", "quality.proto")]
if protoc.main(["protoc", f"-I{proto_root}", f"-I{well_known}", f"--python_out={stubs}", f"--grpc_python_out={stubs}", *files]) != 0:
    sys.exit("protoc failed on proto/")
sys.path.insert(0, stubs)

import grpc  # noqa: E402
from radassist.v1 import ingest_pb2, ingest_pb2_grpc, quality_pb2, quality_pb2_grpc, worklist_pb2, worklist_pb2_grpc  # noqa: E402


def auth(token):
    return [("authorization", f"Bearer {token}")]


channel = grpc.insecure_channel(address)
ingest = ingest_pb2_grpc.IngestServiceStub(channel)
worklist = worklist_pb2_grpc.WorklistServiceStub(channel)
quality = quality_pb2_grpc.QualityServiceStub(channel)


def push(path):
    data = open(os.path.join(root, path), "rb").read()
    size = 1 << 20
    pieces = [data[i:i + size] for i in range(0, len(data), size)]
    requests = (ingest_pb2.StoreInstancesRequest(instance_index=0, chunk=p, last_chunk=i == len(pieces) - 1)
                for i, p in enumerate(pieces))
    response = ingest.StoreInstances(requests, metadata=auth(PACS), timeout=60)
    result = response.results[0]
    assert result.outcome in (ingest_pb2.InstanceResult.STORED, ingest_pb2.InstanceResult.DUPLICATE), result
    return result.study


def draft_ready(study):
    ingest.CompleteStudy(ingest_pb2.CompleteStudyRequest(name=study), metadata=auth(PACS), timeout=30)
    state = None
    for update in ingest.WatchStudy(ingest_pb2.WatchStudyRequest(name=study), metadata=auth(PACS), timeout=120):
        state = update.state
    assert state == ingest_pb2.Study.DRAFT_READY, ingest_pb2.Study.State.Name(state)


def sign(item, text):
    worklist.ClaimWorkItem(worklist_pb2.ClaimWorkItemRequest(name=item), metadata=auth(RADIOLOGIST), timeout=30)
    return worklist.SubmitFinalRead(worklist_pb2.SubmitFinalReadRequest(name=item, text=text), metadata=auth(RADIOLOGIST), timeout=30)


prior = push("sample-dicom/derived/siim_chest_pa_prior.dcm")
draft_ready(prior)
sign(prior.replace("studies/", "workItems/"), "FINDINGS: Endotracheal tube tip 2.5 cm above the carina.\nIMPRESSION: Tube low.")

study = push("sample-dicom/derived/siim_chest_pa_devices.dcm")
draft_ready(study)
name = study.replace("studies/", "workItems/")
page = worklist.ListWorkItems(worklist_pb2.ListWorkItemsRequest(page_size=10), metadata=auth(RADIOLOGIST), timeout=30)
assert name in [w.name for w in page.work_items], page
item = worklist.GetWorkItem(worklist_pb2.GetWorkItemRequest(name=name), metadata=auth(RADIOLOGIST), timeout=30)
assert item.draft.preliminary and item.draft.text.startswith("FINDINGS: "), item.draft.text
ett = [d for d in item.devices if d.device == "endotracheal_tube"][0]
assert abs(ett.measurements[0].value - 45.0) < 1.0, ett
signed = sign(name, "FINDINGS: Endotracheal tube tip 4.5 cm above the carina. No pneumothorax.\nIMPRESSION: Tube in good position.")
assert signed.status == worklist_pb2.WorkItem.SIGNED

comparison = quality.GetStudyComparison(quality_pb2.GetStudyComparisonRequest(name=study), metadata=auth(QA), timeout=30)
labels = {o.observation: o for o in comparison.observations}
assert labels["Pneumothorax"].final_label == "negative", labels["Pneumothorax"]

# A wrong role is refused with PERMISSION_DENIED.
try:
    worklist.ListWorkItems(worklist_pb2.ListWorkItemsRequest(), metadata=auth(PACS), timeout=30)
    sys.exit("a PACS token listed the worklist")
except grpc.RpcError as error:
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error
print(f"python grpcio client: {study} drafted, signed and compared ({len(comparison.observations)} observations)")
