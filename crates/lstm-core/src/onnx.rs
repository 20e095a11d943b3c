//! ONNX export of a model's one-step function: the frame and every layer's states in, the
//! prediction and the next states out, so that any sequence length runs in ONNX Runtime,
//! TensorRT or any other runtime (opset 17). The core writes the LSTM stack: patches,
//! the gates, peepholes, the cell and the heads; a model writes its two gate products and
//! its head's affine map ([`OnnxGates`]). A model without them, or a stack the step
//! function cannot express yet (an encoder-forecaster, another wiring), is refused by name.
//!
//! The file is an ONNX `ModelProto` written here as protocol buffers ([`crate::proto`]): no
//! crate for ONNX or protocol buffers is available to this project, and the messages it
//! needs are five (`ModelProto`, `GraphProto`, `NodeProto`, `TensorProto`,
//! `ValueInfoProto`), field numbers from `onnx.proto`.

use candle_core::{DType, Result, Tensor};

use crate::proto::Message;
use crate::seam::Recurrent;
use crate::stack::Head;

/// ONNX's opset this graph is written for.
pub const OPSET: u64 = 17;

/// A model's part of the graph.
pub trait OnnxGates {
    /// Layer `k`'s gate pre-activations `[B, 4C, ...]` (blocks i, f, g, o) from its input
    /// `x` and its `h`: nodes added to `g`, the output's name returned.
    fn onnx_gates(&self, g: &mut Graph, k: usize, x: &str, h: &str) -> Result<String>;

    /// The head's affine map of `h` (`[B, C_m, ...]`), as [`crate::GateOps::head_forward`].
    fn onnx_head(&self, g: &mut Graph, h: &str) -> Result<String>;

    /// The initializer names of layer `k`'s peephole weights `[ci, cf, co]`, if any.
    fn onnx_peepholes(&self, _k: usize) -> Option<[String; 3]> {
        None
    }
}

/// An ONNX graph being built: nodes, initializers, inputs and outputs.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<Message>,
    initializers: Vec<Message>,
    inputs: Vec<Message>,
    outputs: Vec<Message>,
    count: usize,
}

/// An attribute of a node.
pub enum Attr<'a> {
    Int(&'a str, i64),
    Ints(&'a str, &'a [i64]),
}

impl Graph {
    /// A fresh value name from `hint`.
    pub fn name(&mut self, hint: &str) -> String {
        self.count += 1;
        format!("{hint}_{}", self.count)
    }

    /// Adds node `op` reading `inputs`, writing `outputs`.
    pub fn node_to(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: &[Attr]) {
        let mut node = Message::default();
        for i in inputs {
            node.bytes(1, i.as_bytes());
        }
        for o in outputs {
            node.bytes(2, o.as_bytes());
        }
        node.bytes(4, op.as_bytes());
        for attr in attrs {
            let mut a = Message::default();
            match attr {
                Attr::Int(name, v) => {
                    a.bytes(1, name.as_bytes()).int(3, *v as u64).int(20, 2);
                }
                Attr::Ints(name, vs) => {
                    a.bytes(1, name.as_bytes());
                    for v in *vs {
                        a.int(8, *v as u64);
                    }
                    a.int(20, 7);
                }
            }
            node.bytes(5, &a.0);
        }
        self.nodes.push(node);
    }

    /// Adds node `op` reading `inputs`; returns its one output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: &[Attr]) -> String {
        let out = self.name(&op.to_ascii_lowercase());
        self.node_to(op, inputs, &[&out], attrs);
        out
    }

    /// A float initializer `name` holding `tensor` (any float dtype, stored as f32).
    pub fn initializer(&mut self, name: &str, tensor: &Tensor) -> Result<()> {
        let values: Vec<f32> = tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let mut t = Message::default();
        for &d in tensor.dims() {
            t.int(1, d as u64);
        }
        t.int(2, 1); // FLOAT
        t.bytes(8, name.as_bytes());
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        t.bytes(9, &raw);
        self.initializers.push(t);
        Ok(())
    }

    /// An int64 initializer (shapes, splits), named from `hint`.
    pub fn ints(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.name(hint);
        let mut t = Message::default();
        t.int(1, values.len() as u64);
        t.int(2, 7); // INT64
        t.bytes(8, name.as_bytes());
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        t.bytes(9, &raw);
        self.initializers.push(t);
        name
    }

    /// A float graph input or output `name` of `dims` (`None`: the batch, named `batch`).
    fn value_info(name: &str, dims: &[Option<usize>]) -> Message {
        let mut shape = Message::default();
        for d in dims {
            let mut dim = Message::default();
            match d {
                Some(n) => dim.int(1, *n as u64),
                None => dim.bytes(2, b"batch"),
            };
            shape.bytes(1, &dim.0);
        }
        let mut tensor = Message::default();
        tensor.int(1, 1).bytes(2, &shape.0);
        let mut kind = Message::default();
        kind.bytes(1, &tensor.0);
        let mut info = Message::default();
        info.bytes(1, name.as_bytes()).bytes(2, &kind.0);
        info
    }

    pub fn input(&mut self, name: &str, dims: &[Option<usize>]) {
        self.inputs.push(Self::value_info(name, dims));
    }

    pub fn output(&mut self, name: &str, dims: &[Option<usize>]) {
        self.outputs.push(Self::value_info(name, dims));
    }

    /// The `ModelProto` bytes of this graph.
    pub fn model(&self, name: &str) -> Vec<u8> {
        let mut graph = Message::default();
        for n in &self.nodes {
            graph.bytes(1, &n.0);
        }
        graph.bytes(2, name.as_bytes());
        for i in &self.initializers {
            graph.bytes(5, &i.0);
        }
        for i in &self.inputs {
            graph.bytes(11, &i.0);
        }
        for o in &self.outputs {
            graph.bytes(12, &o.0);
        }
        let mut opset = Message::default();
        opset.bytes(1, b"").int(2, OPSET);
        let mut model = Message::default();
        model
            .int(1, 8) // IR version 8 (opset 17's)
            .bytes(2, b"bench-cli")
            .bytes(7, &graph.0)
            .bytes(8, &opset.0);
        model.0
    }
}

/// The one-step graph of `model`, whose parameters `named` (name, tensor) become its
/// initializers: inputs `frame` `[batch, C, H, W]`, `h{k}`, `c{k}` (each layer's state);
/// outputs `prediction` `[batch, C, H, W]`, `h{k}_out`, `c{k}_out`.
pub fn one_step<M: Recurrent + ?Sized>(
    model: &M,
    gates: &dyn OnnxGates,
    named: &[(String, Tensor)],
) -> Result<Vec<u8>> {
    let stack = model.stack();
    if !stack.wiring.is_plain() {
        candle_core::bail!(
            "only a plain stack of layers exports (not an encoder-forecaster or another wiring)"
        );
    }
    let mut g = Graph::default();
    for (name, tensor) in named {
        g.initializer(name, tensor)?;
    }
    let [c, h, w] = stack.frame;
    let frame_dims = [None, Some(c), Some(h), Some(w)];
    g.input("frame", &frame_dims);
    let state_dims = |channels: usize| -> Vec<Option<usize>> {
        let mut dims = vec![None, Some(channels)];
        dims.extend(stack.spatial_dims().iter().map(|&d| Some(d)));
        dims
    };
    for (k, &ck) in stack.hidden.iter().enumerate() {
        g.input(&format!("h{k}"), &state_dims(ck));
        g.input(&format!("c{k}"), &state_dims(ck));
    }
    let x = to_model_space(&mut g, stack, "frame");
    let mut input = x.clone();
    for (k, &ck) in stack.hidden.iter().enumerate() {
        input = lstm_layer(&mut g, gates, k, ck, &input)?;
        g.output(&format!("h{k}_out"), &state_dims(ck));
        g.output(&format!("c{k}_out"), &state_dims(ck));
    }
    let prediction = match stack.head {
        Head::None => input,
        Head::Affine => gates.onnx_head(&mut g, &input)?,
        Head::AffineSigmoid => {
            let logits = gates.onnx_head(&mut g, &input)?;
            g.node("Sigmoid", &[&logits], &[])
        }
        Head::Residual => {
            let delta = gates.onnx_head(&mut g, &input)?;
            g.node("Add", &[&x, &delta], &[])
        }
    };
    from_model_space(&mut g, stack, &prediction, "prediction");
    g.output("prediction", &frame_dims);
    Ok(g.model("bench-cli one step"))
}

/// Layer `k`'s step (`C_k` = `ck` channels) on `input`: reads the graph inputs `h{k}` and
/// `c{k}`, writes `c{k}_out` and `h{k}_out` (returned).
fn lstm_layer(
    g: &mut Graph,
    gates: &dyn OnnxGates,
    k: usize,
    ck: usize,
    input: &str,
) -> Result<String> {
    let (h_prev, c_prev) = (format!("h{k}"), format!("c{k}"));
    let pre = gates.onnx_gates(g, k, input, &h_prev)?;
    let split = g.ints("split", &[ck as i64; 4]);
    let parts: Vec<String> = (0..4).map(|_| g.name("gate")).collect();
    let outs: Vec<&str> = parts.iter().map(String::as_str).collect();
    g.node_to("Split", &[&pre, &split], &outs, &[Attr::Int("axis", 1)]);
    let [mut pi, mut pf, pg, mut po] = [0, 1, 2, 3].map(|n| parts[n].clone());
    let peep = gates.onnx_peepholes(k);
    if let Some([ci, cf, _]) = &peep {
        let m = g.node("Mul", &[ci, &c_prev], &[]);
        pi = g.node("Add", &[&pi, &m], &[]);
        let m = g.node("Mul", &[cf, &c_prev], &[]);
        pf = g.node("Add", &[&pf, &m], &[]);
    }
    let i = g.node("Sigmoid", &[&pi], &[]);
    let f = g.node("Sigmoid", &[&pf], &[]);
    let gg = g.node("Tanh", &[&pg], &[]);
    let kept = g.node("Mul", &[&f, &c_prev], &[]);
    let written = g.node("Mul", &[&i, &gg], &[]);
    let c_new = format!("c{k}_out");
    g.node_to("Add", &[&kept, &written], &[&c_new], &[]);
    if let Some([_, _, co]) = &peep {
        let m = g.node("Mul", &[co, &c_new], &[]);
        po = g.node("Add", &[&po, &m], &[]);
    }
    let o = g.node("Sigmoid", &[&po], &[]);
    let t = g.node("Tanh", &[&c_new], &[]);
    let h_new = format!("h{k}_out");
    g.node_to("Mul", &[&o, &t], &[&h_new], &[]);
    Ok(h_new)
}

/// `frame` `[B, C, H, W]` in model space: flattened (linear), cut into patches
/// (`pixel_unshuffle`), or as it is.
fn to_model_space(g: &mut Graph, stack: &crate::Stack, frame: &str) -> String {
    let [c, h, w] = stack.frame.map(|d| d as i64);
    if stack.flat {
        return g.node("Flatten", &[frame], &[Attr::Int("axis", 1)]);
    }
    let p = stack.patch as i64;
    if p == 1 {
        return frame.to_string();
    }
    let shape = g.ints("shape", &[0, c, h / p, p, w / p, p]);
    let split = g.node("Reshape", &[frame, &shape], &[]);
    let moved = g.node(
        "Transpose",
        &[&split],
        &[Attr::Ints("perm", &[0, 1, 3, 5, 2, 4])],
    );
    let shape = g.ints("shape", &[0, c * p * p, h / p, w / p]);
    g.node("Reshape", &[&moved, &shape], &[])
}

/// The inverse of [`to_model_space`], into the graph output `out`.
fn from_model_space(g: &mut Graph, stack: &crate::Stack, x: &str, out: &str) {
    let [c, h, w] = stack.frame.map(|d| d as i64);
    let p = stack.patch as i64;
    if stack.flat || p == 1 {
        let shape = g.ints("shape", &[0, c, h, w]);
        g.node_to("Reshape", &[x, &shape], &[out], &[]);
        return;
    }
    let shape = g.ints("shape", &[0, c, p, p, h / p, w / p]);
    let split = g.node("Reshape", &[x, &shape], &[]);
    let moved = g.node(
        "Transpose",
        &[&split],
        &[Attr::Ints("perm", &[0, 1, 4, 2, 5, 3])],
    );
    let shape = g.ints("shape", &[0, c, h, w]);
    g.node_to("Reshape", &[&moved, &shape], &[out], &[]);
}
