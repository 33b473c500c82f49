#!/usr/bin/env python3
"""Validates FHIR R4 JSON with fhir.resources 6.5 (the FHIR 4.0.1 model, pydantic): every
element's name, type and cardinality, contained resources included. Prints what is wrong and
exits 1, or prints the resource type and exits 0. Used by the tests, with .radassist/test-venv.

    .radassist/test-venv/bin/python scripts/validate_fhir.py REPORT.json
"""
import json
import sys

from fhir.resources import construct_fhir_element

data = json.load(open(sys.argv[1]))
try:
    resource = construct_fhir_element(data["resourceType"], data)
except Exception as error:  # the model's validation error lists every problem
    print(error)
    sys.exit(1)
print(resource.resource_type, resource.status, len(resource.contained or []), "contained")
