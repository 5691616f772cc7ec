"""Loading reference checkpoints (placeholder, filled below)."""


def load_checkpoint(model, path_or_dict, strict=True):
    raise NotImplementedError
