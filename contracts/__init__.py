"""The shared language of ossabus: pydantic models and the subject map.

Every service and every external system speaks through these models; nothing on the bus is
shaped anywhere else. `ossabus contracts export DIR` writes them out as JSON Schema.
"""
