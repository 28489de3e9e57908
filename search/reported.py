"""The metric names a trial reports each epoch (light: imported by the sweep's validation and by workers)."""

# besides its epoch count and time, and val_mAP at each tIoU threshold
SEARCHABLE_METRICS = ("val_mAP", "val_scene_acc", "train_loss", "train_action_loss", "train_scene_loss",
                      "train_frame_loss")


def mlflow_name(metric: str) -> str:
    """MLflow metric names may not hold '@': val_mAP@0.5 -> val_mAP_at_0.5."""
    return metric.replace("@", "_at_")
