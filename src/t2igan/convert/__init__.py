"""Importers for checkpoints of the official implementations (see :mod:`t2igan.convert.official`)."""

from t2igan.convert.official import (
    convert_damsm,
    import_damsm_image_encoder,
    import_damsm_text_encoder,
    strip_module_prefix,
)

__all__ = ["convert_damsm", "import_damsm_image_encoder", "import_damsm_text_encoder", "strip_module_prefix"]
