"""Evaluation: Kinetics-400 I3D (`i3d`, weights in `i3d_weights`), FVD (`fvd`), PSNR/SSIM/LPIPS
(`metrics`) and codebook usage/perplexity (`codebook_stats`)."""
