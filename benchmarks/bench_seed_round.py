"""The seed's federated round as written, against this project's engine, on the same data and round.

    FEDREC_DATA=/work/shared/data .venv/bin/python benchmarks/bench_seed_round.py [--seed-batches 40] [--engine both]

Both sides: ML-100K, 90/10 random split (seed 42), 10 IID clients (`np.array_split` of the shuffled training rows, as
the seed), the seed's ExpandedRecommender (embedding 50), one local epoch, batch 256, a fresh Adam(1e-3) per client.
Timed: each client's training loop (forward, backward, Adam step over every batch). The seed's side is its
`ClientDataset` (a pandas merge, then per row `iloc`, `MultiLabelBinarizer.transform` and `OneHotEncoder.transform` in
`__getitem__`) behind a shuffling `DataLoader`, transcribed from the seed notebook; it runs about 800 samples/s, so a
full round takes about two minutes: by default it is timed on the first `--seed-batches` batches of every client and
its samples/s extrapolated (the per-row cost is constant), which the output says.
"""
import argparse, copy, time

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from sklearn.preprocessing import LabelEncoder, MultiLabelBinarizer, OneHotEncoder

from fedrec_nb.data import encode_ratings, load_dataset, split_ratings, encode_features
from fedrec_nb.federated import ClientData, LocalConfig, local_train_sequential
from fedrec_nb.models import build_model


# ---- the seed's code, transcribed (column names adapted to ML-100K's tables) ----
class ClientDataset(Dataset):
    def __init__(self, users, movies, ratings):
        self.data = ratings.merge(users, on='UserID').merge(movies, on='MovieID')
    def __len__(self):
        return len(self.data)
    def __getitem__(self, idx):
        row = self.data.iloc[idx]
        return (
            row['UserID'],
            row['MovieID'],
            torch.tensor(mlb.transform([row['Genres'].split('|')])[0], dtype=torch.float),
            torch.tensor(occupation_encoder.transform([[row['Occupation']]])[0], dtype=torch.float),
            torch.tensor(row['Age_encoded'], dtype=torch.long),
            row['Gender_encoded'],
            row['Rating']
        )


class ExpandedRecommender(nn.Module):
    def __init__(self, num_users, num_movies, embedding_dim, num_genres, num_occupations, num_ages, num_genders=2):
        super(ExpandedRecommender, self).__init__()
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.movie_embedding = nn.Embedding(num_movies + 1, embedding_dim)
        self.age_embedding = nn.Embedding(num_ages, embedding_dim)
        self.gender_embedding = nn.Embedding(2, embedding_dim)
        self.genre_layer = nn.Linear(num_genres, embedding_dim)
        self.occupation_layer = nn.Linear(num_occupations, embedding_dim)
        self.fc1 = nn.Linear(embedding_dim * 6, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 1)
    def forward(self, user_ids, movie_ids, genres, occupations, ages, genders):
        user_embedded = self.user_embedding(user_ids)
        movie_embedded = self.movie_embedding(movie_ids)
        age_embedded = self.age_embedding(ages)
        gender_embedded = self.gender_embedding(genders)
        genres = genres.float()
        occupations = occupations.float()
        genre_embedded = F.relu(self.genre_layer(genres))
        occupation_embedded = F.relu(self.occupation_layer(occupations))
        x = torch.cat((user_embedded, movie_embedded, genre_embedded, occupation_embedded, age_embedded, gender_embedded), 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x.squeeze()


def seed_round(users, movies, train, num_clients, max_batches):
    "The seed's round loop (training part), stopped after `max_batches` batches per client; returns (samples, seconds)."
    global mlb, occupation_encoder
    mlb = MultiLabelBinarizer(); mlb.fit_transform(movies['Genres'].str.split('|'))
    occupation_encoder = OneHotEncoder(sparse_output=False); occupation_encoder.fit_transform(users[['Occupation']])
    users['Gender_encoded'] = LabelEncoder().fit_transform(users['Gender'])
    age_encoder = LabelEncoder(); users['Age_encoded'] = age_encoder.fit_transform(users['Age'])
    # np.array_split on a DataFrame fails with current numpy/pandas (see anchors.md): split the row positions instead
    client_data_split = [train.iloc[p] for p in np.array_split(np.arange(len(train)), num_clients)]
    client_loaders = [DataLoader(ClientDataset(users, movies, d), batch_size=256, shuffle=True) for d in client_data_split]
    global_model = ExpandedRecommender(num_users=users['UserID'].max() + 1, num_movies=train['MovieID'].max() + 1,
                                       embedding_dim=50, num_genres=len(mlb.classes_),
                                       num_occupations=len(occupation_encoder.categories_[0]),
                                       num_ages=len(age_encoder.classes_) + 1)
    criterion = nn.MSELoss()
    client_models = [copy.deepcopy(global_model) for _ in range(num_clients)]
    samples, seconds = 0, 0.0
    for client in range(num_clients):
        optimizer = torch.optim.Adam(client_models[client].parameters(), lr=0.001)
        client_models[client].train()
        t0 = time.perf_counter()
        for b, batch_data in enumerate(client_loaders[client]):
            if max_batches and b >= max_batches: break
            user_ids, movie_ids, genres, occupations, ages, genders, rating = [item for item in batch_data]
            optimizer.zero_grad()
            outputs = client_models[client](user_ids, movie_ids, genres, occupations, ages, genders)
            loss = criterion(outputs, rating.float())
            loss.backward()
            optimizer.step()
            samples += len(rating)
        seconds += time.perf_counter() - t0
    return samples, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed-batches", type=int, default=40, help="batches per client timed on the seed's side (0: all)")
    ap.add_argument("--engine", default="both", choices=["sequential", "vectorized", "both"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    data = load_dataset("ml-100k")
    train, test = split_ratings(data.ratings, "random", 0.1, 42)   # the seed's train_test_split(test_size=0.1, random_state=42)
    # the seed's tables: UserID, MovieID, Rating; Genres as a '|' string; raw occupation, age and gender
    users = data.users.rename(columns={"user_id": "UserID", "occupation": "Occupation", "age": "Age", "gender": "Gender"})
    movies = pd.DataFrame({"MovieID": data.items.item_id, "Genres": data.items.genres.map("|".join)})
    seed_train = train.rename(columns={"user_id": "UserID", "item_id": "MovieID", "rating": "Rating"})
    n_seed, t_seed = seed_round(users.copy(), movies, seed_train, 10, a.seed_batches)
    seed_sps = n_seed / t_seed
    note = f"timed on the first {a.seed_batches} batches of each client" if a.seed_batches else "full round"
    print(f"seed's round (pandas per-row Dataset, {note}): {n_seed:,} samples in {t_seed:.1f} s = {seed_sps:,.0f} samples/s")
    print(f"  -> a full round of {len(train):,} samples would take about {len(train) / seed_sps:.0f} s")

    feats = encode_features(data)
    u, i, y = encode_ratings(train, feats)
    parts = np.array_split(np.arange(len(train)), 10)
    clients = [ClientData(k, u[p], i[p], y[p]) for k, p in enumerate(parts)]
    torch.manual_seed(0)
    net = build_model("expanded", feats, 50, data.rating_scale)
    g0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    w = torch.full((10,), 0.1)
    cfg = LocalConfig(local_epochs=1, batch_size=256, lr=1e-3)
    engines = {"sequential": local_train_sequential}
    if a.engine in ("vectorized", "both"):
        try:
            from fedrec_nb.vectorized import local_train_vectorized
            engines["vectorized"] = local_train_vectorized
        except ImportError as e: print(f"vectorized engine not available ({e})")
        if a.engine == "vectorized": engines.pop("sequential")
    for name, fn in engines.items():
        fn(net, g0, clients[:1], w[:1], feats, cfg, 0, 99, None, "cpu")          # warm-up (not timed)
        t0 = time.perf_counter()
        fn(net, g0, clients, w, feats, cfg, 0, 0, None, "cpu")
        dt = time.perf_counter() - t0
        sps = len(train) / dt
        print(f"this engine ({name}, features precomputed): {len(train):,} samples in {dt:.2f} s = {sps:,.0f} samples/s"
              f"  -> {sps / seed_sps:.1f}x the seed's")


if __name__ == "__main__":
    main()
