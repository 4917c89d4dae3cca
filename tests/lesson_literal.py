"""The lesson's code, literally (../shared/seed/lesson-minibatch-training.txt), parameterized only by
seed, batch size and epochs. Independent of minibatch_core on purpose: it is what the reference engine
is checked against. Prints are replaced by collecting the same values."""

import torch
import torch.nn as nn
import torch.optim as optim
from sklearn.datasets import load_wine
from torch.utils.data import DataLoader, TensorDataset


def lesson_epoch_losses(seed: int, batch_size: int | None, num_epochs: int = 10):
    """Returns (per-epoch average losses, per-batch losses). batch_size None means the full dataset."""
    # Load dataset
    wine = load_wine()
    X = torch.tensor(wine.data, dtype=torch.float32)
    y = torch.tensor(wine.target, dtype=torch.long)

    torch.manual_seed(seed)

    # Define the model
    model = nn.Sequential(
        nn.Linear(13, 10),
        nn.ReLU(),
        nn.Linear(10, 10),
        nn.ReLU(),
        nn.Linear(10, 3)
    )

    # Define criterion and optimizer
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=0.001)

    # Create DataLoader for mini-batches
    batch_size = len(X) if batch_size is None else batch_size
    dataset = TensorDataset(X, y)
    data_loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)

    # Model training with mini-batches
    epoch_losses, batch_losses = [], []
    for epoch in range(num_epochs):  # noqa: B007 - the lesson uses it in a print
        model.train()
        running_loss = 0.0
        for batch_X, batch_y in data_loader:
            optimizer.zero_grad()
            outputs = model(batch_X)
            loss = criterion(outputs, batch_y)
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.item())  # print(f'Batch Loss: {loss.item():.4f}')
            running_loss += loss.item() * batch_X.size(0)

        epoch_loss = running_loss / len(data_loader.dataset)
        epoch_losses.append(epoch_loss)  # print(f'Epoch [{epoch+1}/{num_epochs}] Average Loss: {epoch_loss:.4f}')
    return epoch_losses, batch_losses
