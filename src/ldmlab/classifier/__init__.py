"""Domain classifier: a small CNN trained on the dataset, used for classifier FID/KID/IS and accuracy."""
