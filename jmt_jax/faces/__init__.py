"""Faces in a video: found (`mtcnn`), followed from frame to frame (`tracking`) and cropped
as the model's training data were (`crops`). Used by BioVid preparation and prediction."""
