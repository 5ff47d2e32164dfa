from typing import Any

NOT_PLAIN: object

def clean_plain(value: object, /) -> Any: ...
