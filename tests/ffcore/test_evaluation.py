"""ffcore.evaluation: the error rates of the label scan and of the softmax head."""

from ffcore import RunConfig, Trainer, evaluate


def test_evaluate_counts_the_errors_of_both_classifiers(mnist_slice):
    trainer = Trainer(RunConfig(device="cpu", hidden=[20, 20], epochs=1), mnist_slice)
    trainer.fit(max_steps=5)
    split = mnist_slice.split("val")
    errors = evaluate(trainer.model, split, batch_size=128)  # a last batch shorter than the others
    label_goodness, head_logits = trainer.model.probe(split.images)
    scan = trainer.model.scan_scores(label_goodness).argmax(dim=1)
    assert errors["error_scan"] == int((scan != split.labels).sum()) / len(split)
    assert errors["error_softmax"] == int((head_logits.argmax(dim=1) != split.labels).sum()) / len(split)
    assert trainer.evaluate("val") == evaluate(trainer.model, split)
